//! What the judge is asked, step by step: rediff's own wording of the
//! protocols of CLAIR (Chan et al., 2023), CapMAS's factuality and
//! coverage (Lee et al., 2025) and CAPTURE's scene graphs (Dong et al.,
//! 2024). Every step asks for one JSON value so replies parse without
//! guessing; `docs/scoring.md` lists where each differs from the original.

use crate::parse::Question;

/// Part of every cache key: bump it when a prompt changes, so cached
/// replies to the old wording are not reused.
pub const PROMPT_VERSION: &str = "rediff-judge/1";

/// One judge step: its name (in the cache and in failures) and its prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `clair`, `propositions`, `verify`, `questions`, `answer`, `graph`.
    pub name: &'static str,
    /// The system message.
    pub system: &'static str,
    /// The user message.
    pub user: String,
}

fn bullets(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("- {}", s.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn numbered(items: &[String]) -> String {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}. {}", i + 1, s.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

const CLAIR: &str = "You judge image captions. You get a candidate caption and one or more \
reference descriptions of an image written by people. Estimate how likely it is, from 0 to 100, \
that the candidate describes the same image as the references: 100 when everything it says agrees \
with them, lower for each wrong or invented detail, lower still when it misses much of what they \
describe. Answer with one JSON object and nothing else: \
{\"score\": <integer 0-100>, \"reason\": \"<one sentence>\"}";

/// CLAIR: one call per caption.
pub fn clair(caption: &str, references: &[String]) -> Step {
    Step {
        name: "clair",
        system: CLAIR,
        user: format!(
            "Candidate caption:\n- {}\n\nReference descriptions:\n{}",
            caption.trim(),
            bullets(references)
        ),
    }
}

const PROPOSITIONS: &str = "You split image captions into atomic propositions. An atomic \
proposition states exactly one fact about the image (one object, one attribute of an object, one \
count, or one relation between objects) in a short sentence that stands on its own. Cover every \
fact the caption states, once; add nothing it does not state; skip statements about the caption \
itself or about feelings. Answer with one JSON list of strings and nothing else, for example \
[\"There is a dog.\", \"The dog is brown.\", \"The dog is on a sofa.\"]. A caption that states no \
fact gives [].";

/// Factuality, first call: the caption's atomic propositions (the caption
/// alone, so the split is shared by every reference).
pub fn propositions(caption: &str) -> Step {
    Step {
        name: "propositions",
        system: PROPOSITIONS,
        user: format!("Caption:\n{}", caption.trim()),
    }
}

const VERIFY: &str = "You check facts about an image. You get reference descriptions of the \
image written by people who saw it, and a numbered list of propositions. A proposition is true \
when the references state it or clearly imply it (or the image, when you are shown it, shows it); \
it is false when they contradict it or say nothing that supports it. Answer with one JSON list of \
booleans and nothing else, one per proposition in order, for example [true, false, true].";

/// Factuality, second call: one verdict per proposition.
pub fn verify(propositions: &[String], references: &[String]) -> Step {
    Step {
        name: "verify",
        system: VERIFY,
        user: format!(
            "Reference descriptions:\n{}\n\nPropositions:\n{}",
            bullets(references),
            numbered(propositions)
        ),
    }
}

const QUESTIONS: &str = "You write multiple-choice questions that test how completely a \
caption describes an image. You get reference descriptions of the image written by people. \
Write questions about distinct visible details they state (objects, colours, counts, positions, \
text, actions), each answerable from the references alone, each with four short options of which \
exactly one is right; vary the right option's position. Answer with one JSON list and nothing \
else, for example [{\"question\": \"What colour is the car?\", \"options\": [\"red\", \"blue\", \
\"white\", \"black\"], \"answer\": \"B\"}].";

/// Coverage, once per image: `n` questions from its references.
pub fn questions(references: &[String], n: usize) -> Step {
    Step {
        name: "questions",
        system: QUESTIONS,
        user: format!(
            "Write {n} questions.\n\nReference descriptions:\n{}",
            bullets(references)
        ),
    }
}

const ANSWER: &str = "You answer questions about an image you cannot see, from a caption of \
it alone. For each question pick the option the caption supports; when the caption does not say, \
pick E (I don't know): do not guess. Answer with one JSON list of letters and nothing else, one \
per question in order, for example [\"A\", \"E\", \"C\"].";

/// Coverage, per caption: the questions answered from the caption alone.
pub fn answer(caption: &str, questions: &[Question]) -> Step {
    let qs = questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let opts: String = q
                .options
                .iter()
                .zip(['A', 'B', 'C', 'D'])
                .map(|(o, l)| format!("   {l}. {}\n", o.trim()))
                .collect();
            format!("{}. {}\n{opts}   E. I don't know", i + 1, q.question.trim())
        })
        .collect::<Vec<_>>()
        .join("\n");
    Step {
        name: "answer",
        system: ANSWER,
        user: format!("Caption:\n{}\n\nQuestions:\n{qs}", caption.trim()),
    }
}

const GRAPH: &str = "You parse image descriptions into scene graphs. List the physical \
objects the text mentions (short noun phrases without articles, singular: \"dog\", \"wooden \
table\" becomes object \"table\" with attribute \"wooden\"), the attributes it gives them \
(colour, material, size, shape, state, count), and the relations it states between them (\"on\", \
\"next to\", \"holding\"). Use the text's own words. Answer with one JSON object and nothing else: \
{\"objects\": [\"dog\", \"table\"], \"attributes\": [[\"table\", \"wooden\"]], \"relations\": \
[[\"dog\", \"under\", \"table\"]]}";

/// CAPTURE: a text (caption or reference) parsed into a scene graph.
pub fn graph(text: &str) -> Step {
    Step {
        name: "graph",
        system: GRAPH,
        user: format!("Text:\n{}", text.trim()),
    }
}
