# Image of environment "{{name}}" for the Kubernetes backend (not used by the local
# backend, which builds a virtualenv from the same files). Build context: this folder.
FROM python:{{python}}-slim

# Debian packages from system-packages.txt (one per line; may be empty or absent).
# requirements.txt is named too: a COPY whose only pattern matches nothing fails.
COPY requirements.txt system-packages.txt* /tmp/env/
RUN if [ -s /tmp/env/system-packages.txt ]; then \
      apt-get update \
      && xargs -a /tmp/env/system-packages.txt apt-get install -y --no-install-recommends \
      && rm -rf /var/lib/apt/lists/*; \
    fi

RUN pip install --no-cache-dir -r /tmp/env/requirements.txt

# The isolation runtime must be the host's own version, never the package index's
# (the name there is an old proof of concept): install the wheel the host ships, e.g.
#   COPY apache_airflow_providers_isolation-*.whl /tmp/env/
#   RUN pip install --no-cache-dir --no-deps /tmp/env/apache_airflow_providers_isolation-*.whl
# The keys are mounted at run time (ISOLATION_KEYS_DIR), never baked into the image.
# As the local backend starts it: the sealed task arrives on standard input.
ENTRYPOINT ["python", "-I", "-u", "-m", "isolation.runtime", "--stdin"]
