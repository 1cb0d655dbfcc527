# One image for every process of the production layout (docker-compose.yml, the Procfile): the
# admin on gunicorn, the qcluster workers and the release step differ only by their command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# The admin's CSS and JS, hashed and compressed, for gunicorn to serve (WhiteNoise). Production
# settings refuse to load without a key: this one lives only in this step and signs nothing.
RUN DJANGO_ENV=production DJANGO_SECRET_KEY=collectstatic-at-build-only-signs-nothing \
        python manage.py collectstatic --noinput \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent app

# The code and the static files stay root's: the processes only read them.
USER 10001:10001
EXPOSE 8000
CMD ["gunicorn", "--config", "deploy/gunicorn.conf.py", "circletel.wsgi"]
