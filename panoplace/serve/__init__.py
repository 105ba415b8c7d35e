"""``panoplace serve``: a localisation service over HTTP and a live web map.

The pieces without HTTP (:mod:`.images`, :mod:`.batcher`, :mod:`.metrics`, :mod:`.service`,
:mod:`.sessions`) need only panoplace's own dependencies; :mod:`.app` needs the ``serve`` extra
(FastAPI + uvicorn): ``pip install 'panoplace[serve]'``.
"""
