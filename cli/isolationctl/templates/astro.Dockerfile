# Pick the Astro Runtime your deployment runs; `astro dev init` writes the current one.
FROM astrocrpublic.azurecr.io/runtime:3.1-1
