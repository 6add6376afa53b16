"""trainforge, as carried by the trainforge base images: the runtime only.

    from trainforge import runtime

``trainforge.runtime`` and ``trainforge.contract`` are standard-library only,
so this image needs nothing else; the SDK and CLI (``submit_job``, clients for
S3 and Kubernetes) are not here. A trainer that needs them installs
``trainforge`` with pip in its image, and the installed package wins.
"""

__version__ = "@TRAINFORGE_VERSION@"
