"""The hand-written English-German lexicon of the embedded synthetic corpus.

Written for this project. Each table is a block of `|`-separated rows parsed at import.

Noun categories (a noun may have several): p person, a animal, f food, o portable object,
t text (readable), x openable, e electric device, v vehicle, l place (building/area one can be in),
r room-like (can be tidied), s surface (things can lie on it), b buildable, g path (walk across).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Noun:
    en: str
    en_pl: str
    de: str
    de_pl: str
    gender: str  # "m", "f", "n"
    cats: str
    weak: bool = False  # n-declension: singular accusative/dative take the plural-like ending

    def de_form(self, plural: bool, case: str) -> str:
        if plural:
            # dative plural adds -n unless the plural already ends in -n or -s
            if case == "dat" and not self.de_pl.endswith(("n", "s")):
                return self.de_pl + "n"
            return self.de_pl
        if self.weak and case != "nom":
            return self.de_pl
        return self.de


# en | en plural | de | de plural | gender | categories | "w" for weak nouns
_NOUNS = """
man|men|Mann|Männer|m|p
woman|women|Frau|Frauen|f|p
child|children|Kind|Kinder|n|p
girl|girls|Mädchen|Mädchen|n|p
boy|boys|Junge|Jungen|m|p|w
teacher|teachers|Lehrer|Lehrer|m|p
doctor|doctors|Arzt|Ärzte|m|p
student|students|Student|Studenten|m|p|w
neighbor|neighbors|Nachbar|Nachbarn|m|p|w
friend|friends|Freund|Freunde|m|p
farmer|farmers|Bauer|Bauern|m|p|w
baker|bakers|Bäcker|Bäcker|m|p
cook|cooks|Koch|Köche|m|p
driver|drivers|Fahrer|Fahrer|m|p
king|kings|König|Könige|m|p
queen|queens|Königin|Königinnen|f|p
police officer|police officers|Polizist|Polizisten|m|p|w
tourist|tourists|Tourist|Touristen|m|p|w
musician|musicians|Musiker|Musiker|m|p
painter|painters|Maler|Maler|m|p
writer|writers|Schriftsteller|Schriftsteller|m|p
singer|singers|Sänger|Sänger|m|p
player|players|Spieler|Spieler|m|p
worker|workers|Arbeiter|Arbeiter|m|p
nurse|nurses|Krankenschwester|Krankenschwestern|f|p
grandmother|grandmothers|Großmutter|Großmütter|f|p
grandfather|grandfathers|Großvater|Großväter|m|p
mother|mothers|Mutter|Mütter|f|p
father|fathers|Vater|Väter|m|p
sister|sisters|Schwester|Schwestern|f|p
brother|brothers|Bruder|Brüder|m|p
son|sons|Sohn|Söhne|m|p
daughter|daughters|Tochter|Töchter|f|p
uncle|uncles|Onkel|Onkel|m|p
aunt|aunts|Tante|Tanten|f|p
guest|guests|Gast|Gäste|m|p
customer|customers|Kunde|Kunden|m|p|w
colleague|colleagues|Kollege|Kollegen|m|p|w
soldier|soldiers|Soldat|Soldaten|m|p|w
lawyer|lawyers|Anwalt|Anwälte|m|p
pilot|pilots|Pilot|Piloten|m|p|w
dancer|dancers|Tänzer|Tänzer|m|p
scientist|scientists|Wissenschaftler|Wissenschaftler|m|p
waiter|waiters|Kellner|Kellner|m|p
waitress|waitresses|Kellnerin|Kellnerinnen|f|p
actor|actors|Schauspieler|Schauspieler|m|p
actress|actresses|Schauspielerin|Schauspielerinnen|f|p
baby|babies|Baby|Babys|n|p
dog|dogs|Hund|Hunde|m|a
cat|cats|Katze|Katzen|f|a
horse|horses|Pferd|Pferde|n|a
cow|cows|Kuh|Kühe|f|a
bird|birds|Vogel|Vögel|m|a
mouse|mice|Maus|Mäuse|f|a
pig|pigs|Schwein|Schweine|n|a
rabbit|rabbits|Kaninchen|Kaninchen|n|a
bear|bears|Bär|Bären|m|a|w
lion|lions|Löwe|Löwen|m|a|w
wolf|wolves|Wolf|Wölfe|m|a
fox|foxes|Fuchs|Füchse|m|a
duck|ducks|Ente|Enten|f|a
goat|goats|Ziege|Ziegen|f|a
chicken|chickens|Huhn|Hühner|n|a
monkey|monkeys|Affe|Affen|m|a|w
elephant|elephants|Elefant|Elefanten|m|a|w
snake|snakes|Schlange|Schlangen|f|a
frog|frogs|Frosch|Frösche|m|a
donkey|donkeys|Esel|Esel|m|a
owl|owls|Eule|Eulen|f|a
bee|bees|Biene|Bienen|f|a
spider|spiders|Spinne|Spinnen|f|a
tiger|tigers|Tiger|Tiger|m|a
squirrel|squirrels|Eichhörnchen|Eichhörnchen|n|a
apple|apples|Apfel|Äpfel|m|f
pear|pears|Birne|Birnen|f|f
banana|bananas|Banane|Bananen|f|f
orange|oranges|Orange|Orangen|f|f
cake|cakes|Kuchen|Kuchen|m|f
egg|eggs|Ei|Eier|n|f
bread roll|bread rolls|Brötchen|Brötchen|n|f
loaf|loaves|Brot|Brote|n|f
soup|soups|Suppe|Suppen|f|f
sausage|sausages|Wurst|Würste|f|f
tomato|tomatoes|Tomate|Tomaten|f|f
potato|potatoes|Kartoffel|Kartoffeln|f|f
carrot|carrots|Karotte|Karotten|f|f
cookie|cookies|Keks|Kekse|m|f
pizza|pizzas|Pizza|Pizzen|f|f
onion|onions|Zwiebel|Zwiebeln|f|f
cucumber|cucumbers|Gurke|Gurken|f|f
strawberry|strawberries|Erdbeere|Erdbeeren|f|f
lemon|lemons|Zitrone|Zitronen|f|f
book|books|Buch|Bücher|n|otx
letter|letters|Brief|Briefe|m|otx
newspaper|newspapers|Zeitung|Zeitungen|f|ot
magazine|magazines|Zeitschrift|Zeitschriften|f|ot
map|maps|Karte|Karten|f|ot
story|stories|Geschichte|Geschichten|f|t
poem|poems|Gedicht|Gedichte|n|t
message|messages|Nachricht|Nachrichten|f|t
key|keys|Schlüssel|Schlüssel|m|o
bag|bags|Tasche|Taschen|f|ox
ball|balls|Ball|Bälle|m|o
box|boxes|Kiste|Kisten|f|ox
chair|chairs|Stuhl|Stühle|m|os
table|tables|Tisch|Tische|m|s
bed|beds|Bett|Betten|n|s
lamp|lamps|Lampe|Lampen|f|oe
window|windows|Fenster|Fenster|n|x
door|doors|Tür|Türen|f|x
picture|pictures|Bild|Bilder|n|o
clock|clocks|Uhr|Uhren|f|o
phone|phones|Telefon|Telefone|n|oe
computer|computers|Computer|Computer|m|oe
camera|cameras|Kamera|Kameras|f|oe
radio|radios|Radio|Radios|n|oe
hat|hats|Hut|Hüte|m|o
coat|coats|Mantel|Mäntel|m|o
shoe|shoes|Schuh|Schuhe|m|o
dress|dresses|Kleid|Kleider|n|o
shirt|shirts|Hemd|Hemden|n|o
umbrella|umbrellas|Regenschirm|Regenschirme|m|ox
pen|pens|Stift|Stifte|m|o
knife|knives|Messer|Messer|n|o
spoon|spoons|Löffel|Löffel|m|o
fork|forks|Gabel|Gabeln|f|o
plate|plates|Teller|Teller|m|o
ring|rings|Ring|Ringe|m|o
flower|flowers|Blume|Blumen|f|o
present|presents|Geschenk|Geschenke|n|ox
toy|toys|Spielzeug|Spielzeuge|n|o
guitar|guitars|Gitarre|Gitarren|f|o
violin|violins|Geige|Geigen|f|o
ticket|tickets|Fahrkarte|Fahrkarten|f|o
wallet|wallets|Brieftasche|Brieftaschen|f|ox
mirror|mirrors|Spiegel|Spiegel|m|o
blanket|blankets|Decke|Decken|f|o
candle|candles|Kerze|Kerzen|f|o
bottle|bottles|Flasche|Flaschen|f|ox
cup|cups|Tasse|Tassen|f|o
glass|glasses|Glas|Gläser|n|o
stone|stones|Stein|Steine|m|o
basket|baskets|Korb|Körbe|m|o
ladder|ladders|Leiter|Leitern|f|o
sofa|sofas|Sofa|Sofas|n|s
shelf|shelves|Regal|Regale|n|s
cupboard|cupboards|Schrank|Schränke|m|x
car|cars|Auto|Autos|n|v
bus|buses|Bus|Busse|m|v
train|trains|Zug|Züge|m|v
bicycle|bicycles|Fahrrad|Fahrräder|n|v
boat|boats|Boot|Boote|n|vb
ship|ships|Schiff|Schiffe|n|v
plane|planes|Flugzeug|Flugzeuge|n|v
truck|trucks|Lastwagen|Lastwagen|m|v
tractor|tractors|Traktor|Traktoren|m|v
motorcycle|motorcycles|Motorrad|Motorräder|n|v
taxi|taxis|Taxi|Taxis|n|v
house|houses|Haus|Häuser|n|lrb
garden|gardens|Garten|Gärten|m|lr
park|parks|Park|Parks|m|lg
school|schools|Schule|Schulen|f|lb
church|churches|Kirche|Kirchen|f|lb
kitchen|kitchens|Küche|Küchen|f|lr
room|rooms|Zimmer|Zimmer|n|lr
shop|shops|Geschäft|Geschäfte|n|l
market|markets|Markt|Märkte|m|lg
station|stations|Bahnhof|Bahnhöfe|m|l
street|streets|Straße|Straßen|f|g
forest|forests|Wald|Wälder|m|lg
field|fields|Feld|Felder|n|lg
river|rivers|Fluss|Flüsse|m|g
lake|lakes|See|Seen|m|g
mountain|mountains|Berg|Berge|m|s
city|cities|Stadt|Städte|f|lg
village|villages|Dorf|Dörfer|n|lg
library|libraries|Bibliothek|Bibliotheken|f|lb
museum|museums|Museum|Museen|n|lb
hospital|hospitals|Krankenhaus|Krankenhäuser|n|lb
restaurant|restaurants|Restaurant|Restaurants|n|l
hotel|hotels|Hotel|Hotels|n|lb
office|offices|Büro|Büros|n|lr
bridge|bridges|Brücke|Brücken|f|bg
castle|castles|Schloss|Schlösser|n|lb
island|islands|Insel|Inseln|f|s
beach|beaches|Strand|Strände|m|s
square|squares|Platz|Plätze|m|sg
farm|farms|Bauernhof|Bauernhöfe|m|s
zoo|zoos|Zoo|Zoos|m|l
cinema|cinemas|Kino|Kinos|n|lb
theater|theaters|Theater|Theater|n|lb
bakery|bakeries|Bäckerei|Bäckereien|f|l
tower|towers|Turm|Türme|m|b
hall|halls|Halle|Hallen|f|lb
stable|stables|Stall|Ställe|m|lrb
tent|tents|Zelt|Zelte|n|lb
cellar|cellars|Keller|Keller|m|lr
"""


@dataclass(frozen=True)
class Adjective:
    en: str
    de: str  # predicative form ("teuer")
    de_stem: str  # attributive stem before an ending ("teur-e")
    cats: str  # noun categories it goes with; "*" = any


# en | de | attributive stem (when it differs) | categories
_ADJECTIVES = """
big|groß||*
small|klein||*
old|alt||*
young|jung||pa
new|neu||otevxbls
red|rot||otevxbfs
blue|blau||otevxbs
green|grün||otevxbfs
yellow|gelb||otevxbfs
black|schwarz||aotevxbs
white|weiß||aotevxbs
brown|braun||aotevxbs
grey|grau||aotevxbs
happy|glücklich||pa
sad|traurig||pa
tired|müde||pa
hungry|hungrig||pa
friendly|freundlich||pa
beautiful|schön||*
ugly|hässlich||*
fast|schnell||pav
slow|langsam||pav
expensive|teuer|teur|otevxfs
cheap|billig||otevxfs
heavy|schwer||otevxs
light|leicht||otexs
warm|warm||fxlrs
cold|kalt||fxlrs
clean|sauber||otevxlrs
dirty|schmutzig||otevxlrs
quiet|ruhig||palrs
loud|laut||pae
clever|klug||pa
funny|lustig||pat
strange|seltsam||*
famous|berühmt||ptlb
rich|reich||p
poor|arm||p
nice|nett||p
dark|dunkel|dunkl|lrsx
long|lang||tgs
short|kurz||tg
empty|leer||oxlr
full|voll||oxlr
fresh|frisch||f
sweet|süß||fa
sour|sauer|saur|f
strong|stark||pa
weak|schwach||pa
wild|wild||a
brave|mutig||p
lazy|faul||pa
healthy|gesund||paf
sick|krank||pa
round|rund||os
soft|weich||ofs
hard|hart||ofs
modern|modern||evlb
proud|stolz||pa
curious|neugierig||pa
lonely|einsam||pa
wet|nass||oaxs
dry|trocken||oxsf
"""


@dataclass(frozen=True)
class Verb:
    en: str  # base ("pick up")
    en_3sg: str
    en_past: str
    de: str  # infinitive incl. separable prefix ("abholen")
    prefix: str  # separable prefix ("ab") or ""
    de_2sg: str  # present 2nd person singular of the base verb ("holst")
    de_3sg: str
    de_1sg: str
    participle: str
    aux: str  # "haben" or "sein"
    frame: str  # "tr" accusative object, "dat" dative object, "ditr" dative + accusative,
    #             "intr" no object, "move" directional phrase
    subj: str  # subject categories
    obj: str  # object categories (accusative object for tr/ditr, dative object for dat)


# en | en 3sg | en past | de infinitive | separable prefix | du-form | er-form | ich-form |
# participle | aux | frame | subject cats | object cats   (empty du/er/ich = regular)
_VERBS = """
see|sees|saw|sehen||siehst|sieht||gesehen|haben|tr|pa|paofvtlbs
buy|buys|bought|kaufen|||||gekauft|haben|tr|p|ofvt
sell|sells|sold|verkaufen|||||verkauft|haben|tr|p|ofva
read|reads|read|lesen||liest|liest||gelesen|haben|tr|p|t
write|writes|wrote|schreiben|||||geschrieben|haben|tr|p|t
eat|eats|ate|essen||isst|isst||gegessen|haben|tr|pa|f
cook|cooks|cooked|kochen|||||gekocht|haben|tr|p|f
find|finds|found|finden||findest|findet||gefunden|haben|tr|pa|aof
lose|loses|lost|verlieren|||||verloren|haben|tr|p|o
carry|carries|carried|tragen||trägst|trägt||getragen|haben|tr|p|ofx
wash|washes|washed|waschen||wäschst|wäscht||gewaschen|haben|tr|p|aofv
paint|paints|painted|malen|||||gemalt|haben|tr|p|paolbv
love|loves|loved|lieben|||||geliebt|haben|tr|p|pa
like|likes|liked|mögen||magst|mag|mag|gemocht|haben|tr|pa|paf
visit|visits|visited|besuchen|||||besucht|haben|tr|p|plb
call|calls|called|anrufen|an||||gerufen|haben|tr|p|p
meet|meets|met|treffen||triffst|trifft||getroffen|haben|tr|p|p
hear|hears|heard|hören|||||gehört|haben|tr|pa|pae
open|opens|opened|aufmachen|auf||||gemacht|haben|tr|p|x
close|closes|closed|zumachen|zu||||gemacht|haben|tr|p|x
pick up|picks up|picked up|abholen|ab||||geholt|haben|tr|p|p
invite|invites|invited|einladen|ein|lädst|lädt||geladen|haben|tr|p|p
look at|looks at|looked at|anschauen|an||||geschaut|haben|tr|pa|paofvtlbs
tidy up|tidies up|tidied up|aufräumen|auf||||geräumt|haben|tr|p|r
turn on|turns on|turned on|einschalten|ein|schaltest|schaltet||geschaltet|haben|tr|p|e
turn off|turns off|turned off|ausschalten|aus|schaltest|schaltet||geschaltet|haben|tr|p|e
repair|repairs|repaired|reparieren|||||repariert|haben|tr|p|ove
need|needs|needed|brauchen|||||gebraucht|haben|tr|pa|ofvt
have|has|had|haben||hast|hat||gehabt|haben|tr|p|aofvt
look for|looks for|looked for|suchen|||||gesucht|haben|tr|pa|paof
feed|feeds|fed|füttern|||||gefüttert|haben|tr|p|a
draw|draws|drew|zeichnen||zeichnest|zeichnet||gezeichnet|haben|tr|p|paovlb
catch|catches|caught|fangen||fängst|fängt||gefangen|haben|tr|pa|a
throw|throws|threw|werfen||wirfst|wirft||geworfen|haben|tr|p|o
build|builds|built|bauen|||||gebaut|haben|tr|p|b
kiss|kisses|kissed|küssen||küsst|küsst||geküsst|haben|tr|p|p
forget|forgets|forgot|vergessen||vergisst|vergisst||vergessen|haben|tr|p|ot
follow|follows|followed|folgen|||||gefolgt|sein|dat|pa|pa
help|helps|helped|helfen||hilfst|hilft||geholfen|haben|dat|p|p
thank|thanks|thanked|danken|||||gedankt|haben|dat|p|p
answer|answers|answered|antworten||antwortest|antwortet||geantwortet|haben|dat|p|p
give|gives|gave|geben||gibst|gibt||gegeben|haben|ditr|p|oft
show|shows|showed|zeigen|||||gezeigt|haben|ditr|p|oftv
bring|brings|brought|bringen|||||gebracht|haben|ditr|p|oft
send|sends|sent|schicken|||||geschickt|haben|ditr|p|ot
read|reads|read|vorlesen|vor|liest|liest||gelesen|haben|ditr|p|t
sleep|sleeps|slept|schlafen||schläfst|schläft||geschlafen|haben|intr|pa|
laugh|laughs|laughed|lachen|||||gelacht|haben|intr|p|
work|works|worked|arbeiten||arbeitest|arbeitet||gearbeitet|haben|intr|p|
dance|dances|danced|tanzen||tanzt|tanzt||getanzt|haben|intr|p|
sing|sings|sang|singen|||||gesungen|haben|intr|pa|
wait|waits|waited|warten||wartest|wartet||gewartet|haben|intr|pa|
cry|cries|cried|weinen|||||geweint|haben|intr|p|
play|plays|played|spielen|||||gespielt|haben|intr|pa|
sit|sits|sat|sitzen||sitzt|sitzt||gesessen|haben|intr|pa|
wake up|wakes up|woke up|aufwachen|auf||||gewacht|sein|intr|pa|
get up|gets up|got up|aufstehen|auf||||gestanden|sein|intr|pa|
eat breakfast|eats breakfast|ate breakfast|frühstücken|||||gefrühstückt|haben|intr|p|
go|goes|went|gehen|||||gegangen|sein|move|pa|
run|runs|ran|laufen||läufst|läuft||gelaufen|sein|move|pa|
drive|drives|drove|fahren||fährst|fährt||gefahren|sein|move|p|
come|comes|came|kommen|||||gekommen|sein|move|pa|
walk|walks|walked|spazieren|||||spaziert|sein|move|p|
"""


# Subject pronouns: en, de, person-number key ("1sg", "2sg", "3sg", "1pl", "3pl"), en verb agreement
PRONOUNS = (
    ("I", "ich", "1sg"),
    ("you", "du", "2sg"),
    ("he", "er", "3sg"),
    ("she", "sie", "3sg"),
    ("we", "wir", "1pl"),
    ("they", "sie", "3pl"),
)

# Object pronouns: en, de accusative, de dative, person-number key
OBJECT_PRONOUNS = (
    ("me", "mich", "mir", "1sg"),
    ("you", "dich", "dir", "2sg"),
    ("him", "ihn", "ihm", "3sg"),
    ("her", "sie", "ihr", "3sg"),
    ("us", "uns", "uns", "1pl"),
    ("them", "sie", "ihnen", "3pl"),
)

# Possessive determiners: en, de stem (declined like "ein")
POSSESSIVES = (
    ("my", "mein"),
    ("your", "dein"),
    ("his", "sein"),
    ("her", "ihr"),
    ("our", "unser"),
    ("their", "ihr"),
)

NUMBERS = (
    ("two", "zwei"),
    ("three", "drei"),
    ("four", "vier"),
    ("five", "fünf"),
    ("six", "sechs"),
    ("seven", "sieben"),
    ("eight", "acht"),
    ("nine", "neun"),
    ("ten", "zehn"),
    ("eleven", "elf"),
    ("twelve", "zwölf"),
)

CLOCK_HOURS = (("one", "ein"), *NUMBERS)

# Time adverbials by tense: (en, de, where English puts it: "end" or "mid" = before the verb)
TIME_ADVERBS = {
    "present": (
        ("today", "heute", "end"),
        ("now", "jetzt", "end"),
        ("often", "oft", "mid"),
        ("always", "immer", "mid"),
        ("sometimes", "manchmal", "mid"),
        ("usually", "meistens", "mid"),
        ("every day", "jeden Tag", "end"),
        ("in the morning", "morgens", "end"),
        ("in the evening", "abends", "end"),
        ("rarely", "selten", "mid"),
    ),
    "past": (
        ("yesterday", "gestern", "end"),
        ("last week", "letzte Woche", "end"),
        ("this morning", "heute Morgen", "end"),
        ("last year", "letztes Jahr", "end"),
        ("once", "einmal", "mid"),
        ("two days ago", "vor zwei Tagen", "end"),
    ),
    "future": (
        ("tomorrow", "morgen", "end"),
        ("next week", "nächste Woche", "end"),
        ("soon", "bald", "mid"),
        ("later", "später", "end"),
        ("next year", "nächstes Jahr", "end"),
    ),
}

# Prepositions for a location (dative): en, de, noun categories of the place
LOCATION_PREPS = (
    ("in", "in", "lr"),
    ("on", "auf", "s"),
    ("under", "unter", "sb"),
    ("next to", "neben", "lsbvx"),
    ("behind", "hinter", "lsbvx"),
    ("in front of", "vor", "lsbvx"),
    ("near", "bei", "lb"),
)
# "with" (dative): companions
COMPANION_PREP = ("with", "mit")
# accusative prepositions after an object: "for" the beneficiary
BENEFICIARY_PREP = ("for", "für")
# Directional phrases for motion verbs: en, de, case, categories
DIRECTION_PREPS = (
    ("into", "in", "acc", "lr"),
    ("to", "zu", "dat", "plb"),
    ("through", "durch", "acc", "lg"),
    ("across", "über", "acc", "g"),
    ("out of", "aus", "dat", "lr"),
)

# Subordinating conjunctions: en, de, may the clause come first?
CONJUNCTIONS = (
    ("because", "weil", False),
    ("when", "wenn", True),
    ("although", "obwohl", True),
    ("while", "während", True),
    ("before", "bevor", True),
    ("if", "wenn", True),
)
PAST_WHEN = ("when", "als")  # "when" about one past event

# Verbs that take a "that"-clause: en base, en 3sg, en past, de stem forms (ich, du, er, wir, sie),
# de participle
SAY_VERBS = (
    ("say", "says", "said", ("sage", "sagst", "sagt", "sagen", "sagen"), "gesagt"),
    ("think", "thinks", "thought", ("denke", "denkst", "denkt", "denken", "denken"), "gedacht"),
    ("know", "knows", "knew", ("weiß", "weißt", "weiß", "wissen", "wissen"), "gewusst"),
    ("hope", "hopes", "hoped", ("hoffe", "hoffst", "hofft", "hoffen", "hoffen"), "gehofft"),
    (
        "believe",
        "believes",
        "believed",
        ("glaube", "glaubst", "glaubt", "glauben", "glauben"),
        "geglaubt",
    ),
)

# Modal verbs: key -> (en present 3sg / other, en past, de present forms, de past stem)
MODALS = {
    "can": {
        "de_inf": "können",
        "de": ("kann", "kannst", "kann", "können", "können"),
        "de_past": ("konnte", "konntest", "konnte", "konnten", "konnten"),
    },
    "must": {
        "de_inf": "müssen",
        "de": ("muss", "musst", "muss", "müssen", "müssen"),
        "de_past": ("musste", "musstest", "musste", "mussten", "mussten"),
    },
    "want": {
        "de_inf": "wollen",
        "de": ("will", "willst", "will", "wollen", "wollen"),
        "de_past": ("wollte", "wolltest", "wollte", "wollten", "wollten"),
    },
}


def _rows(block: str) -> list[list[str]]:
    return [line.split("|") for line in block.strip().splitlines()]


def _parse_nouns() -> tuple[Noun, ...]:
    out = []
    for row in _rows(_NOUNS):
        en, en_pl, de, de_pl, gender, cats, *flags = row
        out.append(Noun(en, en_pl, de, de_pl, gender, cats, weak=flags == ["w"]))
    return tuple(out)


def _parse_adjectives() -> tuple[Adjective, ...]:
    # an adjective ending in -e drops it before an ending: "müde" -> "müd-en"
    return tuple(
        Adjective(en, de, stem or (de[:-1] if de.endswith("e") else de), cats)
        for en, de, stem, cats in _rows(_ADJECTIVES)
    )


def _parse_verbs() -> tuple[Verb, ...]:
    out = []
    for row in _rows(_VERBS):
        (en, en3, en_past, de, prefix, du, er, ich, part, aux, frame, subj, obj) = row
        base = de[len(prefix) :]
        stem = base[:-1] if base.endswith(("eln", "ern")) else base[:-2]
        du = du or (stem + ("t" if stem.endswith(("s", "ß", "z", "x")) else "st"))
        er = er or (stem + "t")
        ich = ich or (stem + "e")
        participle = prefix + part
        out.append(
            Verb(en, en3, en_past, de, prefix, du, er, ich, participle, aux, frame, subj, obj)
        )
    return tuple(out)


NOUNS = _parse_nouns()
ADJECTIVES = _parse_adjectives()
VERBS = _parse_verbs()
