"""The words of the demo's synthetic NLI world, as plain Python data (written for this project).

Each vocabulary is a tree: a word names its parent (None for a top word), and a word stands for
the set of things under it, so "poodle" lies inside "dog" inside "animal", and words on different
branches ("poodle", "beagle", "cat") name disjoint sets. make_demo_data.py turns the trees into sets
and decides every label from set inclusion and disjointness.

Words listed under MISMATCHED_ONLY never appear in train.tsv or dev_matched.tsv: the mismatched
dev set uses them (with its own sentence templates) to open a matched / mismatched gap.
"""

# Living things: noun -> (parent, plural form).
ANIMATE_NOUNS = {
    "animal": (None, "animals"),
    "dog": ("animal", "dogs"),
    "poodle": ("dog", "poodles"),
    "beagle": ("dog", "beagles"),
    "terrier": ("dog", "terriers"),
    "collie": ("dog", "collies"),
    "bird": ("animal", "birds"),
    "parrot": ("bird", "parrots"),
    "pigeon": ("bird", "pigeons"),
    "owl": ("bird", "owls"),
    "eagle": ("bird", "eagles"),
    "cat": ("animal", "cats"),
    "horse": ("animal", "horses"),
    "goat": ("animal", "goats"),
    "person": (None, "people"),
    "child": ("person", "children"),
    "boy": ("child", "boys"),
    "girl": ("child", "girls"),
    "man": ("person", "men"),
    "woman": ("person", "women"),
    "grandfather": ("man", "grandfathers"),
    "grandmother": ("woman", "grandmothers"),
}

# Adjectives by dimension; two values of one dimension exclude each other.
ADJECTIVES = {
    "animal": {"color": ["brown", "black", "white", "grey", "golden"], "size": ["small", "big"]},
    "person": {"age": ["young", "old"], "height": ["tall", "short"]},
}

# What a living thing can be doing: activity -> (parent, top nouns that can do it).
BOTH = ("animal", "person")
ACTIVITIES = {
    "resting": (None, BOTH),
    "sleeping": ("resting", BOTH),
    "napping": ("sleeping", BOTH),
    "running": (None, BOTH),
    "sprinting": ("running", BOTH),
    "jogging": ("running", ("person",)),
    "eating": (None, BOTH),
    "playing": (None, BOTH),
    "swimming": (None, BOTH),
    "reading": (None, ("person",)),
    "cooking": (None, ("person",)),
    "singing": (None, ("person",)),
    "dancing": (None, ("person",)),
}
# States read off the activity tree: asleep = sleeping, awake = anything but sleeping.
ASLEEP_ACTIVITY = "sleeping"

# One living thing acting on another: verb -> (passive participle, parent, (agent top, patient top)
# pairs it is used with). Roles may only be swapped for verbs that fit both directions.
TRANSITIVE_VERBS = {
    "following": ("followed", None, (("person", "animal"), ("animal", "person"))),
    "chasing": ("chased", "following", (("person", "animal"), ("animal", "person"))),
    "feeding": ("fed", None, (("person", "animal"),)),
    "washing": ("washed", None, (("person", "animal"),)),
    "carrying": ("carried", None, (("person", "animal"),)),
    "photographing": ("photographed", None, (("person", "animal"),)),
    "biting": ("bitten", None, (("animal", "person"),)),
    "licking": ("licked", None, (("animal", "person"),)),
}

# Places: place -> (parent, preposition).
PLACES = {
    "house": (None, "in"),
    "kitchen": ("house", "in"),
    "bedroom": ("house", "in"),
    "garden": ("house", "in"),
    "park": (None, "in"),
    "street": (None, "on"),
    "beach": (None, "on"),
    "station": (None, "at"),
    "office": (None, "in"),
    "lobby": ("office", "in"),
    "hospital": (None, "at"),
}

# Times of day; any two exclude each other.
TIMES = ["this morning", "this afternoon", "this evening", "at midnight"]

NUMERALS = {2: "two", 3: "three", 4: "four", 5: "five"}

# Things with a state. A state kind lists its atoms and the words that name sets of them, so
# "locked" lies inside "closed" and "unlocked" covers both "open" and "closed but unlocked".
STATE_KINDS = {
    "openable": {
        "open": ["open"],
        "closed": ["shut", "locked"],
        "locked": ["locked"],
        "unlocked": ["open", "shut"],
    },
    "switchable": {"on": ["on"], "off": ["off"]},
    "wettable": {"wet": ["wet"], "dry": ["dry"]},
}
# object -> (state kind, places where it is found)
OBJECTS = {
    "door": ("openable", ("house", "kitchen", "bedroom", "office", "station")),
    "window": ("openable", ("house", "kitchen", "bedroom", "office")),
    "gate": ("openable", ("park", "garden", "station")),
    "drawer": ("openable", ("kitchen", "bedroom", "office")),
    "lamp": ("switchable", ("house", "bedroom", "office", "lobby")),
    "radio": ("switchable", ("kitchen", "bedroom", "office")),
    "oven": ("switchable", ("kitchen", "house")),
    "heater": ("switchable", ("bedroom", "office", "lobby")),
    "towel": ("wettable", ("kitchen", "bedroom", "beach")),
    "floor": ("wettable", ("kitchen", "house", "station", "lobby")),
    "road": ("wettable", ("street", "park")),
}

MISMATCHED_ONLY = {
    "collie",
    "eagle",
    "goat",
    "grandfather",
    "grandmother",
    "golden",
    "swimming",
    "dancing",
    "photographing",
    "licking",
    "office",
    "lobby",
    "hospital",
    "at midnight",
    "five",
    "drawer",
    "heater",
}

# Genres: matched ones share the plain templates; mismatched ones have their own.
MATCHED_GENRES = ("fiction", "travel", "government")
MISMATCHED_GENRES = ("letters", "telephone", "research")

# Sentence openers that do not change what a sentence claims, by genre.
OPENERS = {
    "fiction": ["suddenly ,", "meanwhile ,", "as usual ,", "at that moment ,"],
    "travel": ["on the tour ,", "during our visit ,", "as the guide said ,", "on arrival ,"],
    "government": [
        "according to the records ,",
        "officially ,",
        "the register shows that",
        "the committee confirmed that",
    ],
    # Factive frames: "i saw that S" commits the writer to S.
    "letters": [
        "dear friend , i saw that",
        "i noticed that",
        "it surprised me that",
        "i was glad that",
        "as i told you ,",
    ],
    "telephone": ["well , you know ,", "uh , i mean ,", "yeah , so", "oh ,", "um , well ,"],
    "research": [
        "in the study ,",
        "the researchers found that",
        "the survey showed that",
        "as the data confirmed ,",
    ],
}
# Spoken endings for the telephone genre (premise only).
TELEPHONE_TAILS = [", you know .", ", right ?", ", i guess .", ", yeah ."]

# Joins of two clauses in one premise.
CLAUSE_JOINS = ["while", ", and", ", but", "and"]
