//! The hand-off to the official trainer: the records rediff's Stage II
//! writes to a round's `dataset.json` (drafts with the expert pairs rediff
//! keeps) go through the official ReDiff data loader, which must accept
//! every record and locate every kept pair.
//!
//! The loader's verdicts are recorded by running the official code,
//! unmodified, in `tests/reference/official_loader.py` (see its docstring)
//! on `tests/reference/fixtures/loader/dataset.json`; this test checks that
//! rediff still writes exactly that file (regenerate it with
//! `UPDATE_LOADER_FIXTURE=1`, then rerun the script) and reads the verdicts.

use std::path::{Path, PathBuf};

use rediff_api::data::{RevisePair, Sample};
use rediff_engine::stage2::validate_pairs;
use rediff_formats::reference::{write_conversations, Conversation};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures")
}

/// Drafts and the pairs an expert proposed for them: at the start of the
/// answer, in the middle, before the final period, several per draft, an
/// `org` that occurs twice, multi-token words, and pairs rediff drops.
const CASES: [(&str, &[(&str, &str)]); 10] = [
    (
        "a red circle on the left .",
        &[("red", "green"), ("circle", "square")],
    ),
    (
        "two objects : a big green square and a small star .",
        &[("green", "red"), ("square", "circle")],
    ),
    (
        "a star in the center of the picture .",
        &[("center", "top")],
    ),
    (
        "the picture shows a blue triangle .",
        &[("triangle", "rectangle"), ("blue", "small")],
    ),
    (
        "a red square and a red circle .",
        &[("red circle", "green circle")],
    ),
    (
        "one object : a yellow star at the bottom .",
        &[("bottom", "corner"), ("yellow", "red")],
    ),
    (
        "a small blue circle is there .",
        &[("small blue", "top green"), ("circle", "square")],
    ),
    (
        "a circle on the right .",
        &[("a circle", "a square"), ("right", "left")],
    ),
    (
        // "red" occurs bare (after the parenthesis) before its
        // leading-space form: the official loader marks the latter.
        "a shape (red) next to a red circle .",
        &[("red", "green")],
    ),
    (
        // "red" -> "big" is two tokens to two bare, but " red" -> " big"
        // is two to one: the official loader skips it, so rediff drops it.
        "a tag (red) on a red square .",
        &[("red", "big")],
    ),
];

/// The dataset rediff writes for [`CASES`], and per record the answer
/// positions its kept pairs cover (as rediff located them).
fn dataset() -> (Vec<Conversation>, Vec<Vec<usize>>) {
    let tokenizer =
        rediff_formats::HfTokenizer::from_file(&fixtures().join("loader/tokenizer/tokenizer.json"))
            .unwrap();
    let mut records = Vec::new();
    let mut covered = Vec::new();
    for (i, (draft, pairs)) in CASES.iter().enumerate() {
        let ids = tokenizer.encode(draft).unwrap();
        let pairs: Vec<RevisePair> = pairs
            .iter()
            .map(|(o, t)| RevisePair {
                org: o.to_string(),
                target: t.to_string(),
            })
            .collect();
        let validation = validate_pairs(&tokenizer, &ids, &pairs).unwrap();
        if draft.starts_with("a circle") {
            // At the start of the answer "a" has no leading space: the
            // official loader could not find the pair, so rediff drops it.
            assert_eq!(
                validation.dropped[0].reason,
                rediff_engine::stage2::DropReason::NoLeadingSpace
            );
        }
        if draft.starts_with("a tag") {
            assert_eq!(
                validation.dropped[0].reason,
                rediff_engine::stage2::DropReason::LengthMismatch
            );
        }
        let kept = validation.kept_pairs();
        let mut positions: Vec<usize> = kept
            .iter()
            .flat_map(|p| {
                rediff_api::spans::locate_pair(&tokenizer, &ids, p)
                    .unwrap()
                    .unwrap()
                    .positions()
            })
            .collect();
        positions.sort_unstable();
        covered.push(positions);
        let sample = Sample::new(
            format!("stage2-r1-{i:05}"),
            PathBuf::from("tiny.png"),
            "describe the image .",
            draft.to_string(),
        )
        .with_revise(kept);
        records.push(Conversation::from_sample(&sample, "tiny.png"));
    }
    (records, covered)
}

#[test]
fn the_fixture_dataset_is_what_rediff_writes() {
    let (records, _) = dataset();
    let fixture = fixtures().join("loader/dataset.json");
    if std::env::var_os("UPDATE_LOADER_FIXTURE").is_some() {
        std::fs::create_dir_all(fixture.parent().unwrap()).unwrap();
        write_conversations(&fixture, &records).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let now = tmp.path().join("dataset.json");
    write_conversations(&now, &records).unwrap();
    assert_eq!(
        std::fs::read_to_string(&now).unwrap(),
        std::fs::read_to_string(&fixture).unwrap(),
        "rediff now writes another dataset: UPDATE_LOADER_FIXTURE=1 and rerun tests/reference/official_loader.py"
    );
}

#[test]
fn the_official_loader_accepts_every_record_and_locates_every_kept_pair() {
    let (records, covered) = dataset();
    let verdicts: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("loader/official.json")).unwrap(),
    )
    .unwrap();
    let rows = verdicts["records"].as_array().unwrap();
    assert_eq!(rows.len(), records.len());
    let pairs: usize = records.iter().map(|r| r.revise.len()).sum();
    assert!(pairs >= 8, "the cases keep {pairs} pairs");
    for ((row, record), covered) in rows.iter().zip(&records).zip(&covered) {
        assert_eq!(row["id"], record.id.as_str());
        assert_eq!(row["loaded"], true, "{row}");
        assert_eq!(
            row["pairs_located"].as_u64().unwrap() as usize,
            record.revise.len(),
            "{row}"
        );
        assert_eq!(
            row["revise_positions"].as_u64().unwrap() as usize,
            covered.len(),
            "the official loader marks other positions than rediff: {row}"
        );
        let official: Vec<usize> = row["revise_answer_positions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(
            &official, covered,
            "the official loader marks other answer positions than rediff: {row}"
        );
    }
}
