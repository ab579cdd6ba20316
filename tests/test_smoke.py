"""Smoke tests for the app factory."""

from authserver.platform import models


def test_healthz_answers(client):
    """The process answers /healthz with 200 and a request id."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}
    assert len(response.headers["X-Request-Id"]) >= 8


def test_tables_exist(app):
    """The fixture gives empty tables on the configured database."""
    with app.app_context():
        assert models.db.session.query(models.Account).count() == 0
