"""One blueprint module per resource; ``ROUTES`` is the route map in one place."""
