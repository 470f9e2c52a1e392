"""The demo dataset's topics: fourteen everyday subjects to ask an assistant about.

Each topic holds prompt templates, the words that fill their `{slots}`, and advice sentences
whose `[[key phrases]]` may be set in bold. Science questions have one right answer, so each
carries its own sentences under `questions` instead of shared `facts`.
"""

from __future__ import annotations

from typing import Any

TOPICS: dict[str, dict[str, Any]] = {
    "cooking": {
        "prompts": [
            "How do I make {dish} taste better?",
            "My {dish} always turns out {flaw}. What am I doing wrong?",
            "What's an easy way to cook {dish} for {people} people?",
        ],
        "slots": {
            "dish": [
                "risotto",
                "chicken thighs",
                "lentil soup",
                "pancakes",
                "stir-fry",
                "fried rice",
            ],
            "flaw": ["bland", "soggy", "dry", "burnt on the outside"],
            "people": ["two", "six", "ten"],
        },
        "facts": [
            "Season in layers: a little [[salt at each stage]] beats a lot at the end.",
            "Preheat the pan properly, because [[a hot pan]] gives you browning instead of steaming.",
            "A splash of [[acid, like lemon or vinegar]], brightens a heavy dish right before serving.",
            "Don't crowd the pan; cook in [[smaller batches]] so moisture can escape.",
            "Let it [[rest for five minutes]] so the juices settle before you cut or serve.",
            "Taste as you go and adjust, since [[recipes are a starting point]], not a contract.",
        ],
    },
    "travel": {
        "prompts": [
            "I'm visiting {city} for {days} days. How should I plan it?",
            "What's the cheapest way to get around {city}?",
            "How do I avoid jet lag flying to {city}?",
        ],
        "slots": {
            "city": ["Lisbon", "Tokyo", "Mexico City", "Istanbul", "Montreal", "Hanoi"],
            "days": ["three", "five", "ten"],
        },
        "facts": [
            "Group sights by neighbourhood so you spend [[less time in transit]].",
            "Buy a [[reloadable transit card]] on day one; single tickets add up quickly.",
            "Book the one or two [[must-see places in advance]] and leave the rest flexible.",
            "Shift your sleep by an hour a day before leaving and [[get daylight on arrival]].",
            "Keep a [[photo of your passport]] in your email in case the original goes missing.",
            "Eat where locals queue at lunch; [[set lunch menus]] are often half the dinner price.",
        ],
    },
    "coding": {
        "prompts": [
            "How do I speed up a {lang} script that {task}?",
            "What's the best way to debug a {lang} program that {bug}?",
            "My {lang} tests pass locally but fail in CI. How do I track it down?",
        ],
        "slots": {
            "lang": ["Python", "JavaScript", "Go", "Rust", "Java", "TypeScript"],
            "task": ["parses large CSV files", "calls an API in a loop", "resizes images"],
            "bug": ["crashes at random", "leaks memory", "gives wrong totals"],
        },
        "facts": [
            "Profile before optimizing: [[a profiler]] shows where the time actually goes.",
            "Write a [[small failing test]] that reproduces the bug before changing anything.",
            "Batch network calls or run them concurrently instead of [[one request at a time]].",
            "Read the [[full error message and stack trace]]; the first line is rarely the cause.",
            "Pin [[the exact dependency versions]] so your machine and CI run the same code.",
            "Use [[version control from day one]] so you can bisect when something breaks.",
        ],
    },
    "health": {
        "prompts": [
            "How can I sleep better when I {sleep_issue}?",
            "Is it bad to {habit} every day?",
            "What are simple ways to reduce {symptom}?",
        ],
        "slots": {
            "sleep_issue": ["work night shifts", "wake up at 3 a.m.", "can't stop scrolling"],
            "habit": ["drink three coffees", "skip breakfast", "sit for ten hours"],
            "symptom": ["back pain at my desk", "afternoon fatigue", "tension headaches"],
        },
        "facts": [
            "Keep a [[consistent wake-up time]], even on weekends; it anchors your body clock.",
            "Get up and [[move for a few minutes every hour]] rather than one long workout.",
            "Cut caffeine after [[early afternoon]], since it lingers for six hours or more.",
            "Drink water steadily through the day; [[mild dehydration]] often feels like fatigue.",
            "If it lasts more than a few weeks, [[see a doctor]] rather than guessing.",
            "Dim screens and lights [[an hour before bed]] to let melatonin rise.",
        ],
    },
    "finance": {
        "prompts": [
            "How should I start saving if I earn {income} a month?",
            "Is it smarter to pay off {debt} or invest?",
            "How do I build an emergency fund while {situation}?",
        ],
        "slots": {
            "income": ["$2,000", "$3,500", "€2,800"],
            "debt": ["my student loan", "a credit card", "my car loan"],
            "situation": ["renting in a big city", "supporting a family", "freelancing"],
        },
        "facts": [
            "Automate a transfer on payday so saving happens [[before you can spend it]].",
            "Pay off [[high-interest debt first]]; few investments beat a 20% interest rate.",
            "Aim for an emergency fund of [[three to six months of expenses]].",
            "Track spending for one month to see where [[the money actually goes]].",
            "Low-cost [[index funds]] are a sensible default for long-term investing.",
            "Keep the emergency fund in [[a separate savings account]] so it isn't spent by accident.",
        ],
    },
    "writing": {
        "prompts": [
            "How can I make my {piece} more engaging?",
            "How do I get past writer's block on my {piece}?",
            "Can you give me tips for editing a {piece}?",
        ],
        "slots": {
            "piece": [
                "cover letter",
                "short story",
                "blog post",
                "thesis chapter",
                "wedding speech",
            ]
        },
        "facts": [
            "Open with [[a concrete detail or scene]] instead of a general statement.",
            "Write a [[messy first draft]] quickly and fix it later; editing and drafting are different jobs.",
            "Cut every sentence that [[doesn't move the piece forward]].",
            "Read it [[out loud]]; clumsy rhythm is easier to hear than to see.",
            "Prefer [[strong verbs]] over adverbs stacked on weak ones.",
            "Set a [[small daily word target]], like 200 words, to keep momentum.",
        ],
    },
    "science": {  # questions with one right answer carry their own facts
        "prompts": [],
        "slots": {},
        "facts": [],
        "questions": {
            "Why does the sky look blue?": [
                "Sunlight holds every colour, but [[short blue wavelengths]] scatter far more off air molecules.",
                "The effect is called [[Rayleigh scattering]], and it grows steeply as wavelength shrinks.",
                "At sunset the light crosses [[much more air]], so the blue is scattered away and reds remain.",
                "Violet scatters even more, but our eyes are [[less sensitive to violet]].",
            ],
            "Why does ice float on water?": [
                "Water [[expands as it freezes]]: its molecules lock into an open hexagonal lattice.",
                "That makes [[ice about 9% less dense]] than liquid water.",
                "Anything less dense than the liquid around it [[floats]], the way wood does.",
                "It's why lakes [[freeze from the top down]], which protects the life below.",
            ],
            "How do scientists know the age of the universe?": [
                "They measure how fast galaxies are [[moving apart]] and run the expansion backwards.",
                "The [[cosmic microwave background]] gives an independent estimate from the early universe.",
                "The [[oldest stars]] set a lower limit, and it fits the other estimates.",
                "Several [[independent methods agree]] on about 13.8 billion years.",
            ],
            "Can you explain natural selection simply?": [
                "Individuals in a population [[vary]], and some of that variation is inherited.",
                "Those whose traits suit the environment [[survive and reproduce more]].",
                "Over many generations, [[helpful traits become more common]].",
                "No one plans it: it is the [[filtering effect]] of the environment over time.",
            ],
            "Can you explain entropy simply?": [
                "Think of it as [[counting the ways]] a system can be arranged.",
                "Disordered arrangements [[vastly outnumber]] ordered ones, so systems drift toward them.",
                "That's why heat [[flows from hot to cold]] and never the reverse on its own.",
                "The entropy of a closed system [[never decreases]]; that's the second law.",
            ],
        },
    },
    "fitness": {
        "prompts": [
            "How do I start running if I'm {level}?",
            "What's a good {minutes}-minute home workout?",
            "How can I build strength without a gym?",
        ],
        "slots": {
            "level": ["out of shape", "over 50", "recovering from a knee injury"],
            "minutes": ["15", "20", "30"],
        },
        "facts": [
            "Start with [[run-walk intervals]], like one minute running and two walking.",
            "Increase weekly volume by [[about ten percent at most]] to avoid injury.",
            "Bodyweight [[squats, push-ups and rows]] cover most major muscle groups.",
            "Consistency beats intensity: [[three short sessions a week]] add up.",
            "Warm up for five minutes; [[cold muscles strain]] more easily.",
            "Sleep and protein matter as much as [[the workout itself]] for getting stronger.",
        ],
    },
    "gardening": {
        "prompts": [
            "Why are my {plant} leaves turning {colour}?",
            "What can I grow on a {space}?",
            "How often should I water {plant}?",
        ],
        "slots": {
            "plant": ["tomato", "basil", "monstera", "rose"],
            "colour": ["yellow", "brown", "pale"],
            "space": ["small balcony", "north-facing windowsill", "shady patio"],
        },
        "facts": [
            "Check the soil with a finger; water when [[the top inch is dry]].",
            "Yellow lower leaves often mean [[overwatering]], not thirst.",
            "Herbs like mint and parsley [[tolerate partial shade]] better than tomatoes.",
            "Use pots with [[drainage holes]]; standing water rots roots.",
            "Feed with a [[diluted liquid fertiliser]] every couple of weeks in the growing season.",
            "Water in [[the morning]] so leaves dry before night and fungus has less chance.",
        ],
    },
    "home repair": {
        "prompts": [
            "How do I fix a {problem}?",
            "Can I {job} myself or should I call someone?",
            "What tools do I need to {job}?",
        ],
        "slots": {
            "problem": ["dripping tap", "squeaky door", "running toilet", "crack in drywall"],
            "job": ["replace a light switch", "patch a hole in the wall", "regrout the shower"],
        },
        "facts": [
            "Turn off [[the water or the breaker]] before you start, every time.",
            "Take a [[photo before you disassemble]] anything so you can put it back.",
            "A worn [[washer or cartridge]] is the usual cause of a dripping tap.",
            "For small holes, [[spackle and a putty knife]] are all you need.",
            "If wiring looks scorched or aluminium, [[call an electrician]].",
            "Buy the part after you remove the old one, and [[bring it to the store]] to match it.",
        ],
    },
    "career": {
        "prompts": [
            "How do I ask my manager for {ask}?",
            "How should I prepare for a {role} interview?",
            "Is it a good idea to switch from {field} to {field2}?",
        ],
        "slots": {
            "ask": ["a raise", "remote work", "a promotion"],
            "role": ["product manager", "data analyst", "nurse"],
            "field": ["teaching", "retail", "accounting"],
            "field2": ["UX design", "software", "project management"],
        },
        "facts": [
            "Bring [[specific results with numbers]], not just a list of duties.",
            "Prepare [[three short stories]] about problems you solved; most questions map onto them.",
            "Talk to [[two or three people already in the role]] before you commit.",
            "Time the conversation after [[a visible win]], not during a crisis.",
            "Research [[the market rate]] so your ask is anchored in data.",
            "Take a [[small paid project]] in the new field to test it before quitting.",
        ],
    },
    "language learning": {
        "prompts": [
            "What's the fastest way to learn {language} for a trip?",
            "How do I stop forgetting {language} vocabulary?",
            "How can I practise speaking {language} alone?",
        ],
        "slots": {"language": ["Spanish", "Japanese", "German", "Italian", "Korean"]},
        "facts": [
            "Use [[spaced repetition]] flashcards for ten minutes a day.",
            "Learn the [[most frequent 500 words]] first; they cover most everyday speech.",
            "Shadow native audio: [[repeat right after the speaker]], matching their rhythm.",
            "Talk to yourself while [[describing what you're doing]] during chores.",
            "Book a [[weekly session with a tutor]] for feedback you can't give yourself.",
            "Learn [[whole phrases]], not isolated words, so you can use them straight away.",
        ],
    },
    "pets": {
        "prompts": [
            "How do I stop my {pet} from {behaviour}?",
            "What should I feed a {age} {pet}?",
            "How do I help my {pet} settle into a new home?",
        ],
        "slots": {
            "pet": ["dog", "cat", "rabbit"],
            "behaviour": ["chewing furniture", "scratching the sofa", "barking at night"],
            "age": ["senior", "young", "overweight"],
        },
        "facts": [
            "Redirect to [[an allowed alternative]] and reward that instead of only scolding.",
            "More [[exercise and enrichment]] solves many behaviour problems.",
            "Keep a [[predictable daily routine]] for meals and walks.",
            "Ask your vet about [[portion sizes for their age]]; packaging guidelines run high.",
            "Give them [[a quiet space of their own]] for the first few days.",
            "Sudden behaviour changes can mean pain, so [[rule out a medical cause]].",
        ],
    },
    "music": {
        "prompts": [
            "How do I get better at {instrument} if I only have {minutes} minutes a day?",
            "How can I learn to read music for {instrument}?",
            "How do I stop rushing the tempo when I play {instrument}?",
        ],
        "slots": {
            "instrument": ["guitar", "piano", "violin", "drums"],
            "minutes": ["15", "20", "30"],
        },
        "facts": [
            "Practise with [[a metronome]], starting slower than feels necessary.",
            "Spend most of the time on [[the hardest two bars]], not on what you can already play.",
            "Record yourself once a week; [[listening back]] reveals what you miss while playing.",
            "Learn to read [[one clef at a time]], with very simple pieces.",
            "Short daily sessions beat [[one long weekend session]].",
            "Play along with [[recordings you love]] to keep it fun.",
        ],
    },
}
