"""The columns of stage 01's interaction tables, which every reader writes (stages 02-06 rely on them)."""
from __future__ import annotations

SOURCE_COLS = ("source_system_tab", "source_screen_name", "source_type")
MEMBER_CATS = ("city", "registered_via", "gender")
SONG_CATS = ("language", "genre", "artist", "composer", "lyricist", "isrc_country")
CATEGORICAL = SOURCE_COLS + MEMBER_CATS + SONG_CATS
MEMBER_NUMS = ("bd", "registration_year", "membership_days")
SONG_NUMS = ("song_length", "isrc_year")
WIDE_CODES = ("user", "song", "artist", "composer", "lyricist")  # may exceed Int16
OUTPUT_ORDER = ("time_order", "user", "song", *SOURCE_COLS, "city", "bd", "gender", "registered_via",
                "registration_year", "membership_days", "song_length", "genre", "genre_count", "artist",
                "composer", "lyricist", "composer_count", "lyricist_count", "language", "isrc_country",
                "isrc_year", "member_missing", "bd_missing", "song_meta_missing", "song_extra_missing")
