//! The `model` expert: a trained tiny checkpoint revises a draft with a
//! planted wrong attribute into a pair the validator keeps.

mod common;

use common::{builtin_registry, rediff, texts, trained_run};
use rediff_api::registry::BuildContext;
use rediff_api::spans::apply_pairs;
use rediff_api::{ComponentSpec, ExpertRequest, ExpertVerdict};
use rediff_engine::stage2::validate_pairs;

const COLORS: [&str; 4] = ["red", "green", "blue", "yellow"];

#[tokio::test]
async fn the_model_expert_repairs_a_planted_wrong_colour() {
    let run = trained_run();
    let checkpoint = run.join("models/rediff-base");
    let image = run.join("data/images/eval-00000.png");
    // What the model itself writes for the image.
    let output = rediff()
        .arg("generate")
        .arg("--model")
        .arg(&checkpoint)
        .arg("--image")
        .arg(&image)
        .args(["--steps", "24", "--sampler", "denoise"])
        .output()
        .unwrap();
    let (own, stderr) = texts(&output);
    assert!(output.status.success(), "{stderr}");
    let own = own.trim().to_string();
    let registry = builtin_registry();
    let ctx = BuildContext::new(0).with_checkpoints(registry.checkpoint_loader());
    let spec = ComponentSpec::from_toml_str(
        "test",
        &format!(
            "kind = \"model\"\ncheckpoint = \"{}\"\n",
            checkpoint.display()
        ),
    )
    .unwrap();
    let expert = registry.build_expert(&spec, &ctx).unwrap();
    // The caption the expert itself stands by: the generated one, with the
    // expert's own revisions applied until it judges it right (a tiny model
    // may revise its own sampled caption once).
    let ask = |draft: &str| {
        ExpertRequest::new(
            "eval-00000",
            image.clone(),
            "describe the image .",
            draft.to_string(),
            draft.to_string(),
        )
    };
    let mut own = own;
    for _ in 0..4 {
        match expert.review(&ask(&own)).await.unwrap().verdict {
            ExpertVerdict::Right => break,
            ExpertVerdict::Revisions(pairs) => own = apply_pairs(&own, &pairs),
        }
    }
    let colour = own
        .split_whitespace()
        .find(|w| COLORS.contains(w))
        .unwrap_or_else(|| panic!("no colour in `{own}`"))
        .to_string();
    let planted_colour = COLORS.iter().find(|c| **c != colour).unwrap();
    let draft = own.replacen(&colour, planted_colour, 1);
    let mut request = ask(&draft);
    request.reference = own.clone();
    let reply = expert.review(&request).await.unwrap();
    let ExpertVerdict::Revisions(pairs) = reply.verdict else {
        panic!("`{draft}` judged right");
    };
    let tokenizer =
        rediff_formats::HfTokenizer::from_file(&checkpoint.join("tokenizer.json")).unwrap();
    let validation =
        validate_pairs(&tokenizer, &tokenizer.encode(&draft).unwrap(), &pairs).unwrap();
    assert!(
        validation
            .kept
            .iter()
            .any(|k| k.pair.org.contains(*planted_colour) && k.pair.target.contains(&colour)),
        "draft `{draft}` (model wrote `{own}`): kept {:?}, dropped {:?}",
        validation.kept,
        validation.dropped
    );
    // Its own caption needs no correction.
    let right = ask(&own);
    assert_eq!(
        expert.review(&right).await.unwrap().verdict,
        ExpertVerdict::Right
    );
}
