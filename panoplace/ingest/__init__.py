"""Recordings in: videos, GPS tracks (GPX, NMEA, CSV) and geotagged photos → frames CSV + images.

- :mod:`~panoplace.ingest.tracks`: GPS tracks and positions interpolated at given times.
- :mod:`~panoplace.ingest.video`: videos sampled every N seconds or metres
  (:func:`ingest_video`).
- :mod:`~panoplace.ingest.exif` / :mod:`~panoplace.ingest.photos`: photos placed by EXIF GPS or
  on a track (:func:`ingest_photos`).
- :mod:`~panoplace.ingest.output`: the output folder (images, ``frames.csv``, ``skipped.csv``).
"""

from panoplace.ingest.output import IngestResult, Skipped
from panoplace.ingest.photos import ingest_photos
from panoplace.ingest.tracks import Track, load_track
from panoplace.ingest.video import TimeSync, ingest_video

__all__ = ["IngestResult", "Skipped", "Track", "TimeSync", "ingest_photos", "ingest_video", "load_track"]
