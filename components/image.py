"""The one project image every component runs on (built by docker/build.sh; `kind load docker-image` it).

A non-``latest`` tag, so Kubernetes does not try to pull an image that was loaded onto the nodes.
Changing it changes the compiled pipelines: regenerate them (see pipelines/README.md).
"""
PROJECT_IMAGE = "hybridmi:dev"
