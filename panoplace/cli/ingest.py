"""``panoplace ingest``: a video + GPS track, or geotagged photos → frames CSV + images."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from panoplace.cli.argtypes import existing_file, existing_path, finite_float, non_negative_float, positive_float, refuse_unless
from panoplace.ingest.tracks import DEFAULT_MAX_GAP_S

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="turn a video + GPS track, or geotagged photos, into a frames CSV + images",
        description="A single video (mp4, mov, m4v, avi, mkv) is sampled every N seconds or every N "
                    "metres of travel and each kept frame is placed on the --track (GPX, NMEA log, or "
                    "CSV with time,lat,lon) at track time = VIDEO_START + video time + TIME_OFFSET, "
                    "interpolated linearly between fixes. Photos (files or folders) are placed by "
                    "their EXIF GPS, else on the --track at their EXIF capture time + TIME_OFFSET, "
                    "and written upright (EXIF orientation applied). Frames/photos with no position "
                    "(outside the track, or in a gap longer than --max-gap) are left out and listed "
                    "in OUT/skipped.csv. Writes OUT/images/, OUT/frames.csv (image,lat,lon,...,"
                    "timestamp,sequence), OUT/skipped.csv and OUT/ingest.json; a rerun with the same "
                    "inputs resumes.",
        epilog="examples: panoplace ingest drive.mp4 --track drive.gpx --every-m 5 --out runs/drive; "
               "panoplace ingest photos/ --out runs/photos",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", type=existing_path("input"), help="one video file, or photo files/folders")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new, or an earlier ingest to resume)")
    p.add_argument("--track", metavar="FILE", default=None, type=existing_file("track file"),
                   help="GPS track: .gpx, NMEA log (.nmea/.nma/.log/.txt) or .csv with time,lat,lon "
                        "(times in seconds or ISO 8601); required for video")
    s = p.add_mutually_exclusive_group()
    s.add_argument("--every-s", type=positive_float, default=None, metavar="S", help="keep a video frame every S seconds")
    s.add_argument("--every-m", type=positive_float, default=None, metavar="M", help="keep a video frame every M metres of travel")
    t = p.add_argument_group("clocks")
    t.add_argument("--video-start", default=None, metavar="TIME",
                   help="track time of the video's first frame: seconds or ISO 8601 (default: the track's first fix)")
    t.add_argument("--time-offset", type=finite_float, default=None, metavar="S",
                   help="seconds added to camera times (video time or EXIF DateTimeOriginal) to get "
                        "track times (default 0)")
    t.add_argument("--max-gap", type=non_negative_float, default=None, metavar="S",
                   help="no position between two fixes more than S seconds apart (default 10; 0 = any gap)")
    p.add_argument("--condition", default=None, help="condition tag written to every row (e.g. day, night)")
    p.add_argument("--sequence", default=None, help="sequence tag (default: the video's name, or 'photos')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from panoplace.outputs import Output, claim

    with claim([Output(args.out, "--out", folder=True, existing="resume")], [*args.inputs, args.track]):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from panoplace.errors import InputError
    from panoplace.ingest import TimeSync, ingest_photos, ingest_video, load_track
    from panoplace.ingest.tracks import parse_time
    from panoplace.ingest.video import VIDEO_EXTENSIONS

    inputs = [Path(x) for x in args.inputs]
    track = load_track(args.track) if args.track else None
    start = parse_time(args.video_start, "--video-start") if args.video_start is not None else None
    # camera clocks and gaps matter only where a time is placed on a track
    refuse_unless(track is not None, args, ["time_offset", "max_gap"], "with --track (camera times placed on a GPS track)")
    offset = 0.0 if args.time_offset is None else args.time_offset
    max_gap = DEFAULT_MAX_GAP_S if args.max_gap is None else args.max_gap
    sync = TimeSync(start=start, offset_s=offset, max_gap_s=max_gap if max_gap > 0 else None)
    videos = [x for x in inputs if x.suffix.lower() in VIDEO_EXTENSIONS]
    if videos:
        if len(inputs) != 1:
            raise InputError("give one video per ingest (or only photos)")
        if track is None:
            raise InputError("a video needs --track (GPX, NMEA or time,lat,lon CSV) to place its frames")
        result = ingest_video(videos[0], args.out, track, every_s=args.every_s, every_m=args.every_m,
                              sync=sync, condition=args.condition, sequence=args.sequence)
    else:
        if args.every_s is not None or args.every_m is not None or args.video_start is not None:
            raise InputError("--every-s/--every-m/--video-start apply to a video; the inputs are photos")
        result = ingest_photos(inputs, args.out, track, sync=sync, condition=args.condition,
                               sequence=args.sequence or "photos")
    log.info("%d frames → %s; %d left out (%s)", len(result.images), result.frames_csv, len(result.skipped),
             Path(args.out) / "skipped.csv")
    return 0
