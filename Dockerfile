# authserver image: the wheel that tests/test_packaging.py builds and checks, installed
# into a venv on a slim Python, run by gunicorn as an unprivileged user.
# Not built in this project's CI (there is no Docker engine there): docs/production.md.
#   docker build -t authserver .        # or: docker compose up (compose.yaml)

FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY authserver/ authserver/
COPY templates/ templates/
COPY static/ static/
# The same command as the test, with the build backend fetched by pip (build isolation).
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/authserver/bin:$PATH \
    AUTHSERVER_INSTANCE_PATH=/var/lib/authserver
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/authserver authserver \
    && install -d -o authserver -g authserver -m 0700 /var/lib/authserver
COPY --from=wheel /wheels/ /tmp/wheels/
RUN python -m venv /opt/authserver \
    && /opt/authserver/bin/pip install --no-cache-dir /tmp/wheels/authserver-*.whl \
    && rm -rf /tmp/wheels
COPY deploy/gunicorn.conf.py /etc/authserver/gunicorn.conf.py
USER authserver
WORKDIR /var/lib/authserver
# The instance folder (an optional config.py); the signing keys are in the database.
VOLUME ["/var/lib/authserver"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# In a container the published port is the way in: listen on every interface.
CMD ["gunicorn", "-c", "/etc/authserver/gunicorn.conf.py", "-b", "0.0.0.0:8000", "authserver:create_app()"]
