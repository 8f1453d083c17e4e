from tests.conftest import Running


def test_health_over_http(app: Running) -> None:
    response = app.client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"
