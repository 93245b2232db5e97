# isolationctl: what the isolation runtime needs on the host image.
# packages.txt (bubblewrap, libseccomp2) and requirements.txt are installed by the
# Astro Runtime's own build steps. Isolated environments are virtualenvs built by
# `isolationctl deploy --local`, with the Python version each one names: install those
# interpreters here if the image lacks them, e.g. for Python 3.12:
#   RUN pip install --no-cache-dir uv && uv python install 3.12
# Private keys are never baked into the image: mount the keyring at run time and point
# the workers at it (AIRFLOW__ISOLATION__KEYRING_PATH), or use the isolation_default connection.
ENV ISOLATION_ENVS_HOME=/usr/local/airflow/.isolation/envs
