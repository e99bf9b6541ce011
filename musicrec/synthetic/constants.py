"""The constants of the simulated world: presets, model parameters, and real-like category codes
and shares of the KKBOX files (source tabs and their triples, cities, languages, genres, names)."""
from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------------------------
# presets and model parameters
_MODEL = {
    "n_clusters": 24,            # latent taste clusters
    "latent_dim": 16,            # dimension of p_u, q_s
    "song_noise": 0.1,           # song-specific part of q_s (relative to the unit-norm centre)
    "user_noise": 0.1,           # user-specific part of p_u
    "user_concentration": 1.0,   # Dirichlet concentration of pi_u (small = sparse taste)
    "gamma": 2.2,                # weight of the latent affinity <p_u, q_s> in the logit
    "user_sd": 0.5,              # user propensity a_u
    "activity_propensity": 0.5,  # weight of (log) activity in a_u (unit total variance)
    "member_scale": 3.0,         # multiplier of the member (age band, registered_via) effects
    "tab_concentration": 30.0,   # Dirichlet concentration of a user's mix of source tabs
    "song_sd": 0.45,             # song appeal b_s
    "popularity_appeal": 0.6,    # weight of (log) popularity in b_s
    "artist_appeal": 0.7,        # weight of the artist's shared appeal in b_s (unit total variance)
    "activity_sigma": 1.5,       # lognormal sigma of user activity (heavy tail, capped at 2.8 sigma)
    "popularity_alpha": 0.85,    # Pareto tail index of song popularity (Zipf-like, heavy head)
    "back_catalogue": 0.8,       # share of songs available from the start
    "new_song_boost": 1.0,       # popularity multiplier of songs released during the time range
    "old_users": 0.45,           # share of users present from the start
    "arrival_tilt": 0.8,         # arrivals thin out over time: density 1 - tilt * t
    "churn": 0.6,                # share of users who stop during the time range
    "recent_window": 0.08,       # "new music" window (share of the time range)
    "recent_scale": 0.3,         # multiplier of the per-tab probability of drawing from that window
    "drift_head": 1.6,           # extra logit of the very first rows
    "drift_rows": 9_000,         # e-folding of the head drift, in rows (capped at 5% of train)
    "drift_trend": 0.4,          # linear decline of the logit over the whole time range
    "target_mean": 0.5035,       # train.csv mean of p_true (real KKBOX)
    "surplus": 2.9,              # rows drawn per row kept: repeated pairs (over half) are dropped
}
PRESETS: dict[str, dict] = {
    "tiny": {"train_rows": 20_000, "test_rows": 5_000, "n_users": 300, "n_songs": 5_000, **_MODEL},
    "small": {"train_rows": 300_000, "test_rows": 100_000, "n_users": 2_000, "n_songs": 40_000, **_MODEL},
    "kkbox": {"train_rows": 7_377_418, "test_rows": 2_556_790, "n_users": 34_403, "n_songs": 700_000,
              **_MODEL},
}
TRAIN_COLUMNS = ["msno", "song_id", "source_system_tab", "source_screen_name", "source_type", "target"]
TEST_COLUMNS = ["id", "msno", "song_id", "source_system_tab", "source_screen_name", "source_type"]
MEMBER_COLUMNS = ["msno", "city", "bd", "gender", "registered_via", "registration_init_time",
                  "expiration_date"]
SONG_COLUMNS = ["song_id", "song_length", "genre_ids", "artist_name", "composer", "lyricist", "language"]
EXTRA_COLUMNS = ["song_id", "name", "isrc"]

# ---------------------------------------------------------------------------------------------
# source context: tabs with their draw weights and effects, and the (tab, screen, type) triples
TABS = ["my library", "discover", "search", "radio", "listen with", "explore", "notification",
        "settings", None]
# Draw weights of the tabs. Taste-driven "my library" rows repeat (user, song) pairs more often and
# lose more rows to the first-listen rule, hence its larger weight: after that rule the shares are
# the real ones (my library ~50%, discover ~28%, search ~8.5%, radio ~6.5%, listen with ~3.3%, ...).
TAB_SHARE = np.array([0.593, 0.233, 0.0845, 0.058, 0.027, 0.0187, 0.0025, 0.0008, 0.0022])
TAB_SHARE = TAB_SHARE / TAB_SHARE.sum()
TAB_LOGIT = np.array([0.55, -0.25, -0.30, -1.10, -0.70, -0.20, -0.20, 0.30, 0.0])
TAB_TASTE = np.array([0.95, 0.70, 0.75, 0.60, 0.50, 0.65, 0.65, 0.90, 0.70])   # P(cluster from pi_u)
TAB_RECENT = np.array([0.05, 0.35, 0.12, 0.15, 0.15, 0.35, 0.30, 0.05, 0.10])  # P(new-music window)
TYPE_LOGIT = {"local-library": 0.10, "song-based-playlist": -0.15, "top-hits-for-artist": -0.10,
              "album": 0.05, "song": -0.10, "topic-article-playlist": -0.20}
TRIPLES = [  # (tab, screen, type, weight within tab); None = missing cell
    ("my library", "Local playlist more", "local-library", 0.540),
    ("my library", "Local playlist more", "local-playlist", 0.262),
    ("my library", "My library", "local-library", 0.012),
    ("my library", "My library", "local-playlist", 0.009),
    ("my library", "My library_Search", "local-library", 0.002),
    ("my library", "Album more", "album", 0.024),
    ("my library", "Artist more", "top-hits-for-artist", 0.008),
    ("my library", "Online playlist more", "online-playlist", 0.012),
    ("my library", "Search", "online-playlist", 0.008),
    ("my library", "Local playlist more", "album", 0.008),
    ("my library", "Radio", "radio", 0.001),
    ("my library", None, "local-library", 0.014),
    ("my library", None, "local-playlist", 0.012),
    ("my library", None, "top-hits-for-artist", 0.009),
    ("my library", None, "song", 0.005),
    ("discover", "Online playlist more", "online-playlist", 0.330),
    ("discover", "Online playlist more", "song-based-playlist", 0.040),
    ("discover", "Discover Chart", "online-playlist", 0.110),
    ("discover", "Discover Feature", "online-playlist", 0.070),
    ("discover", "Discover Feature", "song-based-playlist", 0.050),
    ("discover", "Discover Feature", "album", 0.006),
    ("discover", "Discover Feature", "my-daily-playlist", 0.002),
    ("discover", "Discover Genre", "online-playlist", 0.035),
    ("discover", "Discover New", "online-playlist", 0.008),
    ("discover", "Album more", "album", 0.070),
    ("discover", "Artist more", "top-hits-for-artist", 0.075),
    ("discover", "Search Trends", "song", 0.006),
    ("discover", "Search", "song", 0.008),
    ("discover", "Local playlist more", "local-library", 0.020),
    ("discover", "Unknown", "online-playlist", 0.025),
    ("discover", None, "song-based-playlist", 0.032),
    ("discover", None, "online-playlist", 0.028),
    ("discover", None, "top-hits-for-artist", 0.020),
    ("search", "Search", "song", 0.350),
    ("search", "Artist more", "top-hits-for-artist", 0.240),
    ("search", "Album more", "album", 0.140),
    ("search", "Online playlist more", "online-playlist", 0.120),
    ("search", "Search Home", "online-playlist", 0.020),
    ("search", "Search Trends", "song", 0.025),
    ("search", "Search", "artist", 0.010),
    ("search", "Local playlist more", "local-library", 0.015),
    ("search", None, "song", 0.050),
    ("radio", "Radio", "radio", 0.950),
    ("radio", "Artist more", "top-hits-for-artist", 0.010),
    ("radio", None, "radio", 0.030),
    ("listen with", "Others profile more", "listen-with", 0.820),
    ("listen with", "Online playlist more", "online-playlist", 0.080),
    ("listen with", "Album more", "album", 0.020),
    ("listen with", None, "listen-with", 0.070),
    ("explore", "Explore", "online-playlist", 0.520),
    ("explore", "Online playlist more", "online-playlist", 0.220),
    ("explore", "Explore", "topic-article-playlist", 0.070),
    ("explore", "Album more", "album", 0.050),
    ("explore", "Artist more", "top-hits-for-artist", 0.040),
    ("explore", None, "online-playlist", 0.100),
    ("notification", None, "online-playlist", 0.350),
    ("notification", "Local playlist more", "local-library", 0.250),
    ("notification", "Discover Feature", "online-playlist", 0.250),
    ("notification", None, "my-daily-playlist", 0.150),
    ("settings", None, "local-library", 0.500),
    ("settings", "Local playlist more", "local-library", 0.350),
    ("settings", None, "topic-article-playlist", 0.150),
    (None, None, None, 1.0),
]
EXTRA_MISSING = {"source_system_tab": 0.0006, "source_type": 0.0010}  # blanked on top of the triples
NULL_LITERAL_SHARE = 0.3   # share of missing source cells written as the string "null" (else empty)

# ---------------------------------------------------------------------------------------------
# members and songs: real-like category codes and shares
CITIES = np.array([1, 13, 5, 4, 15, 22, 6, 14, 12, 9, 8, 11, 18, 10, 21, 3, 17, 7, 16, 20, 19])
CITY_SHARE = np.array([.5652, .0987, .0766, .0503, .0443, .0426, .0265, .0206, .0143, .0090, .0084,
                       .0083, .0075, .0063, .0062, .0059, .0044, .0027, .0010, .0008, .0003])
VIA = np.array([4, 7, 9, 3, 13, 16])
VIA_SHARE = np.array([0.3311, 0.2742, 0.2508, 0.1418, 0.0020, 0.0001])
VIA_LOGIT = np.array([-0.10, 0.15, 0.05, -0.05, 0.0, 0.0])
REG_YEARS = np.arange(2004, 2016)   # registration years of users present from the start
REG_YEAR_WEIGHT = np.array([260, 396, 506, 706, 516, 497, 1215, 3070, 1872, 3102, 2699, 4679.0])
LANGUAGES = np.array([52, 3, -1, 17, 31, 24, 10, 59, 45, 38])
LANG_SHARE = np.array([0.40, 0.24, 0.15, 0.07, 0.06, 0.03, 0.03, 0.01, 0.006, 0.004])
LANG_LOGIT = np.array([-0.05, 0.10, -0.20, 0.0, 0.15, 0.05, 0.05, 0.0, 0.0, 0.0])
LANG_POPULARITY = np.array([1.0, 2.5, 0.5, 0.8, 1.5, 1.0, 1.5, 0.6, 0.6, 0.6])  # KKBOX is Mandarin-heavy
GENRES = np.array([465, 1609, 2022, 921, 958, 2122, 786, 1259, 458, 359, 139, 444, 947, 726, 437, 1152,
                   451, 873, 940, 109, 1011, 125, 798, 880, 388, 2072, 1955, 691, 829, 1180, 1995, 2130,
                   242, 409, 374, 2189, 2058, 1572, 1616, 423, 352, 893])
GENRE_SHARE = np.array([.40, .060, .055, .045, .043, .038, .036, .035, .031, .024, .022, .022, .018, .017,
                        .017, .015, .010, .009, .009, .008, .007, .007, .005, .005, .005, .004, .004,
                        .003, .003, .003, .003, .003, .002, .002, .002, .002, .002, .002, .002, .002,
                        .002, .002])
ISRC_COUNTRY = {  # language -> (country codes, shares)
    3: (["TW", "HK", "CN", "US", "QM"], [0.70, 0.10, 0.10, 0.05, 0.05]),
    10: (["HK", "TW", "CN"], [0.75, 0.20, 0.05]),
    24: (["TW", "HK", "CN"], [0.70, 0.20, 0.10]),
    17: (["JP", "US"], [0.92, 0.08]),
    31: (["KR", "US"], [0.90, 0.10]),
    None: (["US", "GB", "DE", "FR", "NL", "IT", "CA", "AU", "SE", "QM", "TC"],
        [0.42, 0.20, 0.07, 0.06, 0.04, 0.04, 0.03, 0.03, 0.03, 0.05, 0.03]),
}
LATIN_FIRST = ["Aiden", "Bella", "Carter", "Daria", "Elias", "Freya", "Gavin", "Hana", "Ivan", "Jade",
               "Kai", "Luna", "Milo", "Nora", "Owen", "Piper", "Quinn", "Rhea", "Silas", "Tessa", "Umar",
               "Vera", "Wes", "Xena", "Yuri", "Zara", "Leon", "Maya", "Noah", "Iris", "Felix", "Cleo",
               "Jonas", "Lena", "Oscar", "Ruby", "Theo", "Elsa", "Hugo", "Ada"]
LATIN_LAST = ["Hart", "Vale", "Stone", "Reed", "Frost", "Lane", "Wolfe", "Cross", "Bloom", "Gray",
              "Knight", "Rivers", "Moss", "Parker", "Shaw", "Wynn", "North", "Fox", "Blake", "Hale",
              "Quill", "Rowe", "Marsh", "Sterling", "Crane", "Dunn", "Ember", "Finch", "Grove", "Holt"]
WORDS = ["Love", "Night", "Heart", "Summer", "Rain", "Dream", "Fire", "Light", "Home", "Forever",
         "Tonight", "Stay", "Run", "Gold", "Blue", "Sky", "Alone", "Together", "Wild", "Young", "Story",
         "Stars", "Ocean", "Moon", "Shadow", "Dance", "Roads", "Morning", "Echoes", "Paradise", "Again",
         "Falling", "Closer", "Broken", "Magic", "River", "City", "Waves", "Hold", "Me", "You", "On",
         "My", "Mind", "Back", "Time", "Better", "Last", "First", "Kiss", "Neon", "Velvet", "Silver",
         "Electric", "Golden", "Crystal", "Thunder", "Lunar", "Scarlet", "Atlas", "Signal", "Harbor"]
CJK_SURNAME = list("王李張劉陳楊黃趙吳周徐孫馬朱胡郭何林羅高鄭梁謝宋唐許韓馮鄧曹彭曾蕭田董潘袁蔡蔣余杜葉程魏蘇呂丁")
CJK_GIVEN = list("偉芳娜敏靜麗強磊軍洋勇艷傑娟濤明超秀霞平剛桂英華玉萍紅玲芬燕彬鵬輝丹晨琳雪婷宇瑩怡晴嘉佳欣豪")
CJK_TITLE = list("愛我你們的心夢天光雨風花月星海夜情歌時間永遠回憶說再見等待幸福孤單城市遠方微笑眼淚青春未來相信勇氣溫柔寂寞")
HANGUL = list("가나다라마바사아자차카타하지민수현준서연우진영호은혜소윤태성하린")
KANA = list("あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわん")
TITLE_SUFFIX = [" (Live)", " (Remix)", " - Radio Edit", " (Acoustic Version)", " (Instrumental)"]
B64 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", dtype=np.uint8)
WINDOW_START = np.datetime64("2016-01-01")   # time 0 of the simulation
WINDOW_DAYS = 424                            # time 1 = 2017-02-28, the last real registration date


