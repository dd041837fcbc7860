"""`jaxmusic serve`: a web page and a JSON API that classify uploaded songs.

* :mod:`.batching`: one thread per model gathers the windows of concurrent
  requests into padded batches (compiled once per bucket size, at start);
* :mod:`.analysis`: one upload checked (format, size, duration, truncation,
  silence), decoded and classified by :func:`jaxmusic.predict.predict_audio`;
* :mod:`.app`: the Starlette routes (page, ``/api/models``, ``/api/predict``,
  ``/api/stats``) and the :class:`~.app.Service` that holds the loaded runs;
* :mod:`.client`: a standard-library client (start a server, upload audio);
* ``static/``: the page, its script and its style (served by the app; no CDN).

Needs the ``serve`` extra (``pip install -e '.[serve]'``: Starlette, uvicorn,
python-multipart); the rest of jaxmusic does not import this package, and this
file imports nothing, so :mod:`.client` works without the extra.
"""
