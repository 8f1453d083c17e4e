"""The rules of the appliance, shared by the HTTP API and the CLI.

No Sanic or Click imports here: services take plain values and return plain
objects, and raise ``banatie_local.errors.ApiError`` subclasses.
"""
