"""The ``tint`` command: ``main`` routes, ``options`` holds what commands share, and each
command has its own module (``image``, ``info``, ``video``, ``camera``, ``serve``, ``train``,
``eval``, ``convert``, ``bench``).  The top layer: nothing imports it."""
