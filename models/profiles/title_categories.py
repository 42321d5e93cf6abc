"""Product categories derived from item titles, for catalogues that have none (Online Retail).

A title like "WHITE HANGING HEART T-LIGHT HOLDER" or "JUMBO BAG RED RETROSPOT" names its product
type by a keyword somewhere in it (the English head noun is not reliably last in these titles:
"ALARM CLOCK BAKELIKE RED"). Each title is split into words, plurals folded, and the words are
looked up in the keyword groups below; when several groups match, the group listed first wins,
so specific product types (cake tin -> baking) come before generic containers (tin -> storage)
and themes (retrospot, vintage) are not categories; seasonal words (christmas, hanging) mean
"decorations" only when nothing more specific is named. A title matching no group
gets no category: it adds nothing to the candidates rather than a guessed one. Fees and postage
lines are recognised so that they never become a category.

The groups were chosen from the most frequent title words of the Online Retail file; they cover
about 90% of its purchase lines; most of the rest are postage/fee lines and rare product types.
"""

from __future__ import annotations

import re

NOT_A_PRODUCT = "__not_a_product__"

# (category, keywords) in priority order; keywords are upper case and singular.
_GROUPS: list[tuple[str, tuple[str, ...]]] = [
    (NOT_A_PRODUCT, ("POSTAGE", "CARRIAGE", "MANUAL", "DISCOUNT", "DOTCOM", "FEE", "CHARGE",
                     "ADJUST", "SAMPLE")),
    ("candles & lanterns", ("T-LIGHT", "TEALIGHT", "CANDLE", "LANTERN", "INCENSE",
                            "CANDLESTICK", "CANDLEHOLDER")),
    ("clocks", ("CLOCK",)),
    ("lighting", ("LIGHT", "LAMP", "LAMPSHADE", "NIGHTLIGHT")),
    ("frames & mirrors", ("FRAME", "MIRROR")),
    ("baking", ("CAKESTAND", "CAKE", "BAKING", "COOKIE", "CUTTER", "MOULD", "CUPCAKE",
                "BISCUIT")),
    ("cups & mugs", ("MUG", "CUP", "TEACUP", "SAUCER", "BEAKER")),
    ("tableware", ("PLATE", "BOWL", "CUTLERY", "NAPKIN", "DOILY", "JUG", "TEAPOT", "TRAY",
                   "COASTER", "PLACEMAT", "SPOON", "FORK", "STRAW", "SETTING")),
    ("kitchen", ("KITCHEN", "SCALE", "JAM", "RECIPE", "COLANDER", "CHOPPING", "UTENSIL",
                 "SPICE", "DISPENSER", "BRUSH")),
    ("home textiles", ("CUSHION", "DOORMAT", "TOWEL", "BLANKET", "THROW", "QUILT", "APRON",
                       "GLOVE")),
    ("hot water bottles", ("BOTTLE", "WARMER", "HOTTIE")),
    ("signs & plaques", ("SIGN", "PLAQUE", "CHALKBOARD", "BLACKBOARD", "MEMO", "BOARD")),
    ("cards & gift wrap", ("CARD", "WRAP", "TAG", "RIBBON", "ENVELOPE")),
    ("stationery", ("PENCIL", "PEN", "NOTEBOOK", "ERASER", "RULER", "STICKER", "MARKER",
                    "CRAYON", "CHALK", "JOURNAL", "STAMP", "MAGNET", "NOTEPAD", "DIARY",
                    "CALENDAR", "BOOK", "STATIONERY", "LIST")),
    ("party & decorations", ("DECORATION", "ORNAMENT", "BAUBLE", "BUNTING", "GARLAND",
                             "BALLOON", "PARTY", "WREATH", "CONFETTI", "POPCORN",
                             "STOCKING", "CRACKER", "BELL")),
    ("toys & games", ("TOY", "DOLL", "DOLLY", "GAME", "PUZZLE", "JIGSAW", "TEDDY", "DOMINO",
                      "SKITTLE", "PLAYHOUSE", "SOLDIER", "BLOCK", "SPINNING",
                      "SKIPPING", "BINGO", "LADDER", "GLIDER", "PIGGY")),
    ("crafts & sewing", ("SEWING", "FELTCRAFT", "CRAFT", "KNITTING", "BUTTON", "KIT", "PAINT",
                         "COLOURING", "CLAY")),
    ("garden & outdoor", ("GARDEN", "PLANT", "PLANTER", "WATERING", "TRELLIS", "PARASOL",
                          "UMBRELLA", "PICNIC", "BIRDHOUSE", "FEEDER")),
    ("bathroom & beauty", ("BATHROOM", "SOAP", "PLASTER", "TISSUE", "TOILET", "LIP", "GLOSS",
                           "NAIL")),
    ("jewellery & accessories", ("NECKLACE", "EARRING", "BRACELET", "BROOCH", "KEYRING",
                                 "CHARM", "HAIR", "BANGLE", "FAN", "FOB")),
    ("hooks & hangers", ("HOOK", "HANGER", "KNOB", "PEG", "RACK")),
    ("bags & purses", ("BAG", "SHOPPER", "TOTE", "PURSE", "WALLET", "HOLDALL", "BACKPACK",
                       "RUCKSACK")),
    ("boxes & storage", ("BOX", "TIN", "JAR", "DRAWER", "CABINET", "BASKET", "STORAGE",
                         "CRATE", "TRUNK", "CHEST", "BIN", "HAMPER", "CONTAINER", "TRINKET")),
    # Themes that mean a decoration only when nothing more specific is named.
    ("party & decorations", ("CHRISTMAS", "XMAS", "EASTER", "HANGING", "WICKER", "FILIGREE")),
]
_PRIORITY = {kw: (rank, cat) for rank, (cat, kws) in enumerate(_GROUPS) for kw in kws}
_WORD = re.compile(r"[A-Z]+(?:-[A-Z]+)*")
CATEGORIES = tuple(dict.fromkeys(cat for cat, _ in _GROUPS if cat != NOT_A_PRODUCT))


def _singular(word: str) -> str:
    if len(word) <= 3 or word.endswith("SS"):
        return word
    if word.endswith("IES"):
        return word[:-3] + "Y"  # DOILIES -> DOILY
    if word.endswith(("XES", "CHES", "SHES")):
        return word[:-2]  # BOXES -> BOX
    return word[:-1] if word.endswith("S") else word


def category_from_title(title: str | None) -> str | None:
    """The derived category of a title; None when no group matches or it is a fee/postage."""
    if not title:
        return None
    best: tuple[int, str] | None = None
    for word in _WORD.findall(title.upper()):
        hit = _PRIORITY.get(word) or _PRIORITY.get(_singular(word))
        if hit and (best is None or hit < best):
            best = hit
    if best is None or best[1] == NOT_A_PRODUCT:
        return None
    return best[1]
