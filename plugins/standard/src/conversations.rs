//! The `conversations` data source: training data in the reference
//! implementation's formats (LLaVA conversations and ViCrit samples, see
//! [`rediff_formats::reference`]).
//!
//! ```toml
//! [data]
//! kind = "conversations"
//! train = ["data/llava.json", "data/vicrit.jsonl"]   # required, at least one file
//! eval = ["data/heldout.json"]                       # optional, default none
//! image_root = "data/images"                         # required
//! tokenizer = "data/tokenizer.json"                  # optional, default: the model's own
//! max_samples = 1000                                 # optional, default all
//! turns = "first"                                    # optional: "first" or "each"
//! vicrit_equal_tokens = false                        # optional: the reference's ViCrit filter
//! ```
//!
//! Each file is a JSON array or JSON Lines; each record is detected by its
//! keys (`conversations`: LLaVA, `changed_caption`: ViCrit), so one file may
//! mix both. Relative paths in the options resolve against the current
//! directory when the pipeline is built (not against the pipeline file).
//! Image paths in records resolve inside `image_root`; one that leaves it is
//! an error. The source has no ground truth, so no caption scorer.

use std::path::{Path, PathBuf};

use rediff_api::data::{DataContext, DataSource, Sample, Split};
use rediff_api::registry::BuildContext;
use rediff_api::tokens::TextTokenizer;
use rediff_api::{Error, Result};
use rediff_formats::reference::{read_reference_samples_with, ReferenceRecord, Turns};
use serde::Deserialize;

/// Options of the `conversations` data source. Relative paths resolve
/// against the pipeline file's directory (the current directory for a
/// pipeline that is not a file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationsOptions {
    /// Training files (JSON array or JSON Lines of LLaVA conversations
    /// and/or ViCrit samples). Required, at least one.
    pub train: Vec<PathBuf>,
    /// Held-out files, same formats. Default: none.
    #[serde(default)]
    pub eval: Vec<PathBuf>,
    /// Directory the records' image paths are relative to. Required.
    pub image_root: PathBuf,
    /// A `tokenizer.json` that defines the vocabulary (for models built from
    /// options, like `tiny-vlm`). Default: none (the model brings its own).
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// At most this many samples per split, the first in file order.
    /// Default: all.
    #[serde(default)]
    pub max_samples: Option<usize>,
    /// Which turns of a multi-turn conversation become samples: `first`
    /// (default) or `each` (see [`Turns`]).
    #[serde(default)]
    pub turns: Turns,
    /// Keep a ViCrit record only when its two captions and its two spans
    /// have equal token counts under `tokenizer`, as the reference's
    /// `preprocess_vicrit.py` does. Default false.
    #[serde(default)]
    pub vicrit_equal_tokens: bool,
}

/// The `conversations` data source.
pub struct Conversations {
    train_files: Vec<PathBuf>,
    eval_files: Vec<PathBuf>,
    image_root: PathBuf,
    max_samples: Option<usize>,
    turns: Turns,
    vicrit_equal_tokens: bool,
    tokenizer: Option<TextTokenizer>,
    prepared: Option<(Vec<Sample>, Vec<Sample>)>,
}

impl ConversationsOptions {
    /// The options with relative paths resolved by `ctx` (against the
    /// pipeline file's directory).
    pub fn resolved(mut self, ctx: &BuildContext) -> Self {
        let join = |p: &mut PathBuf| *p = ctx.resolve(p);
        self.train.iter_mut().for_each(join);
        self.eval.iter_mut().for_each(join);
        join(&mut self.image_root);
        if let Some(t) = &mut self.tokenizer {
            join(t);
        }
        self
    }
}

fn absolute(path: &Path) -> std::result::Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))
}

impl Conversations {
    /// Validates the options, makes relative paths absolute (against the
    /// current directory) and loads the tokenizer, if one is named.
    pub fn new(options: ConversationsOptions) -> std::result::Result<Self, String> {
        if options.train.is_empty() {
            return Err("`train` must name at least one file".into());
        }
        if options.max_samples == Some(0) {
            return Err("max_samples must be positive (leave it out for all samples)".into());
        }
        if options.vicrit_equal_tokens && options.tokenizer.is_none() {
            return Err(
                "vicrit_equal_tokens counts tokens with `tokenizer`: name one (for a \
checkpoint, its tokenizer.json)"
                    .into(),
            );
        }
        let all = |files: &[PathBuf]| {
            files
                .iter()
                .map(|p| absolute(p))
                .collect::<std::result::Result<Vec<_>, _>>()
        };
        let tokenizer = match &options.tokenizer {
            Some(p) => {
                let p = absolute(p)?;
                Some(
                    rediff_formats::HfTokenizer::from_file(&p)
                        .map_err(|e| format!("tokenizer {}: {e}", p.display()))?,
                )
            }
            None => None,
        };
        Ok(Self {
            train_files: all(&options.train)?,
            eval_files: all(&options.eval)?,
            image_root: absolute(&options.image_root)?,
            max_samples: options.max_samples,
            turns: options.turns,
            vicrit_equal_tokens: options.vicrit_equal_tokens,
            tokenizer,
            prepared: None,
        })
    }

    fn read_split(&self, files: &[PathBuf]) -> Result<Vec<Sample>> {
        let limit = self.max_samples.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        for file in files {
            if out.len() >= limit {
                break;
            }
            let samples =
                read_reference_samples_with(file, &self.image_root, self.turns, |r| self.keep(r))?;
            for s in samples.into_iter().take(limit - out.len()) {
                if !s.image.is_file() {
                    return Err(Error::Image {
                        path: s.image.clone(),
                        message: format!(
                            "file not found (sample {} of {}, image root {})",
                            s.id,
                            file.display(),
                            self.image_root.display()
                        ),
                    });
                }
                out.push(s);
            }
        }
        Ok(out)
    }
}

impl Conversations {
    /// The reference's ViCrit filter (when enabled): equal token counts of
    /// the captions and of the spans.
    fn keep(&self, record: &ReferenceRecord) -> Result<bool> {
        let (ReferenceRecord::Vicrit(v), true, Some(tk)) =
            (record, self.vicrit_equal_tokens, &self.tokenizer)
        else {
            return Ok(true);
        };
        let n = |t: &str| tk.encode(t).map(|ids| ids.len());
        Ok(n(&v.original_caption)? == n(&v.changed_caption)?
            && n(&v.solution_original)? == n(&v.solution_target)?)
    }
}

impl DataSource for Conversations {
    fn prepare(&mut self, ctx: &DataContext) -> Result<()> {
        if !self.image_root.is_dir() {
            return Err(Error::invalid(format!(
                "conversations: image_root {} is not a directory",
                self.image_root.display()
            )));
        }
        let train = self.read_split(&self.train_files)?;
        if train.is_empty() {
            return Err(Error::invalid(format!(
                "conversations: the train files hold no samples: {}",
                self.train_files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let eval = self.read_split(&self.eval_files)?;
        if let Some(tk) = &self.tokenizer {
            std::fs::create_dir_all(&ctx.dir).map_err(|e| Error::io(&ctx.dir, e))?;
            tk.save(&ctx.dir.join("tokenizer.json"))?;
        }
        self.prepared = Some((train, eval));
        Ok(())
    }

    fn samples(&self, split: Split) -> Result<Vec<Sample>> {
        let (train, eval) = self
            .prepared
            .as_ref()
            .ok_or_else(|| Error::invalid("conversations: prepare() was not called"))?;
        Ok(match split {
            Split::Train => train.clone(),
            Split::Eval => eval.clone(),
        })
    }

    fn tokenizer(&self) -> Option<TextTokenizer> {
        self.tokenizer.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rediff_api::ComponentSpec;
    use rediff_formats::reference::{
        write_conversations, write_vicrit, Conversation, VicritSample,
    };

    fn png(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // A 1x1 PNG is enough: prepare only checks the file exists.
        std::fs::write(path, b"\x89PNG").unwrap();
    }

    fn conversation(id: &str, image: &str) -> Conversation {
        Conversation::from_sample(
            &Sample::new(id, PathBuf::new(), "describe the image .", "a red circle ."),
            image,
        )
    }

    fn vicrit(image: &str) -> VicritSample {
        VicritSample {
            image: image.into(),
            problem: "describe the image .".into(),
            original_caption: "a blue circle .".into(),
            changed_caption: "a red circle .".into(),
            solution_original: "blue".into(),
            solution_target: "red".into(),
        }
    }

    fn options(dir: &Path, train: &[&str], eval: &[&str]) -> ConversationsOptions {
        ConversationsOptions {
            train: train.iter().map(|f| dir.join(f)).collect(),
            eval: eval.iter().map(|f| dir.join(f)).collect(),
            image_root: dir.join("images"),
            tokenizer: None,
            max_samples: None,
            turns: Turns::First,
            vicrit_equal_tokens: false,
        }
    }

    fn ctx(dir: &Path) -> DataContext {
        DataContext::new(dir.join("run/data"), 0)
    }

    #[test]
    fn reads_llava_and_vicrit_files_into_splits() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in ["a.png", "sub/b.png", "c.png"] {
            png(&d.join("images").join(f));
        }
        write_conversations(
            &d.join("llava.json"),
            &[conversation("1", "a.png"), conversation("2", "sub/b.png")],
        )
        .unwrap();
        write_vicrit(&d.join("vicrit.jsonl"), &[vicrit("c.png")]).unwrap();
        write_conversations(&d.join("eval.json"), &[conversation("e1", "c.png")]).unwrap();
        let mut src =
            Conversations::new(options(d, &["llava.json", "vicrit.jsonl"], &["eval.json"]))
                .unwrap();
        assert!(src.samples(Split::Train).is_err(), "before prepare");
        src.prepare(&ctx(d)).unwrap();
        let train = src.samples(Split::Train).unwrap();
        assert_eq!(train.len(), 3);
        assert_eq!(train[1].image, d.join("images/sub/b.png"));
        assert_eq!(train[1].question, "describe the image .");
        assert_eq!(train[2].id, "vicrit-1");
        assert_eq!(train[2].revise[0].org, "red");
        assert_eq!(train[2].revise[0].target, "blue");
        let eval = src.samples(Split::Eval).unwrap();
        assert_eq!(eval.len(), 1);
        assert!(src.tokenizer().is_none() && src.scorer().is_none());

        // max_samples caps each split, in file order.
        let mut capped = Conversations::new(ConversationsOptions {
            max_samples: Some(2),
            ..options(d, &["llava.json", "vicrit.jsonl"], &[])
        })
        .unwrap();
        capped.prepare(&ctx(d)).unwrap();
        let ids: Vec<_> = capped
            .samples(Split::Train)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, ["1", "2"]);
        assert!(capped.samples(Split::Eval).unwrap().is_empty());
    }

    #[test]
    fn missing_and_escaping_images_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        png(&d.join("images/a.png"));
        write_conversations(
            &d.join("t.json"),
            &[conversation("1", "a.png"), conversation("2", "gone.png")],
        )
        .unwrap();
        let mut src = Conversations::new(options(d, &["t.json"], &[])).unwrap();
        let err = src.prepare(&ctx(d)).unwrap_err().to_string();
        assert!(
            err.contains("gone.png") && err.contains("not found") && err.contains("t.json"),
            "{err}"
        );

        png(&d.join("outside.png"));
        write_conversations(&d.join("t.json"), &[conversation("7", "../outside.png")]).unwrap();
        let mut src = Conversations::new(options(d, &["t.json"], &[])).unwrap();
        let err = src.prepare(&ctx(d)).unwrap_err().to_string();
        assert!(
            err.contains("t.json: record 1") && err.contains("../outside.png"),
            "{err}"
        );

        let abs = d.join("outside.png").display().to_string();
        write_vicrit(&d.join("v.jsonl"), &[vicrit("a.png"), vicrit(&abs)]).unwrap();
        let mut src = Conversations::new(options(d, &["v.jsonl"], &[])).unwrap();
        let err = src.prepare(&ctx(d)).unwrap_err().to_string();
        assert!(err.contains("v.jsonl:2") && err.contains(&abs), "{err}");

        let mut src = Conversations::new(options(d, &["nope.json"], &[])).unwrap();
        let err = src.prepare(&ctx(d)).unwrap_err().to_string();
        assert!(err.contains("nope.json"), "{err}");
    }

    #[test]
    fn options_are_checked_and_paths_made_absolute() {
        let spec = ComponentSpec::from_toml_str(
            "p.toml",
            "kind = \"conversations\"\ntrain = [\"rel/t.json\"]\nimage_root = \"imgs\"\n",
        )
        .unwrap();
        let opts: ConversationsOptions = spec.options().unwrap();
        let src = Conversations::new(opts).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(src.train_files, vec![cwd.join("rel/t.json")]);
        assert_eq!(src.image_root, cwd.join("imgs"));

        let spec = ComponentSpec::from_toml_str(
            "p.toml",
            "kind = \"conversations\"\ntrain = []\nimage_root = \"i\"\nimage_rot = 1\n",
        )
        .unwrap();
        let err = spec
            .options::<ConversationsOptions>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("image_rot"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let err = Conversations::new(options(dir.path(), &[], &[]))
            .err()
            .unwrap();
        assert!(err.contains("train"), "{err}");
        let err = Conversations::new(ConversationsOptions {
            tokenizer: Some(dir.path().join("tk.json")),
            ..options(dir.path(), &["t.json"], &[])
        })
        .err()
        .unwrap();
        assert!(err.contains("tk.json"), "{err}");
    }

    #[test]
    fn a_named_tokenizer_is_loaded_and_saved_with_the_data() {
        use tokenizers::models::wordlevel::WordLevel;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let vocab = [("[UNK]".to_string(), 0u32), ("red".to_string(), 1)];
        let model = WordLevel::builder()
            .vocab(vocab.into_iter().collect())
            .unk_token("[UNK]".into())
            .build()
            .unwrap();
        let tk = rediff_formats::HfTokenizer::wrap(tokenizers::Tokenizer::new(model));
        tk.save(&d.join("tk.json")).unwrap();
        png(&d.join("images/a.png"));
        write_conversations(&d.join("t.json"), &[conversation("1", "a.png")]).unwrap();
        let mut src = Conversations::new(ConversationsOptions {
            tokenizer: Some(d.join("tk.json")),
            ..options(d, &["t.json"], &[])
        })
        .unwrap();
        assert_eq!(src.tokenizer().unwrap().vocab_size(), 2);
        src.prepare(&ctx(d)).unwrap();
        assert!(d.join("run/data/tokenizer.json").is_file());
    }

    #[test]
    fn each_turn_of_a_conversation_can_be_a_sample() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        png(&d.join("images/a.png"));
        let mut c = conversation("9", "a.png");
        c.conversations.push(rediff_formats::reference::Turn {
            from: "human".into(),
            value: "and the colour ?".into(),
        });
        c.conversations.push(rediff_formats::reference::Turn {
            from: "gpt".into(),
            value: "it is green .".into(),
        });
        c.revise = vec![rediff_api::data::RevisePair {
            org: "green".into(),
            target: "blue".into(),
        }];
        write_conversations(&d.join("t.json"), &[c]).unwrap();
        let mut first = Conversations::new(options(d, &["t.json"], &[])).unwrap();
        first.prepare(&ctx(d)).unwrap();
        assert_eq!(first.samples(Split::Train).unwrap().len(), 1);
        let mut each = Conversations::new(ConversationsOptions {
            turns: Turns::Each,
            ..options(d, &["t.json"], &[])
        })
        .unwrap();
        each.prepare(&ctx(d)).unwrap();
        let s = each.samples(Split::Train).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[1].id.as_str(), s[1].question.as_str()),
            ("9#2", "and the colour ?")
        );
        assert_eq!(
            (s[1].answer.as_str(), s[1].revise.len(), s[0].revise.len()),
            ("it is green .", 1, 0)
        );
    }

    #[test]
    fn the_reference_vicrit_filter_keeps_equal_token_counts_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        png(&d.join("images/c.png"));
        let tk =
            rediff_formats::HfTokenizer::word_level(&["a", "red", "blue", "dark", "circle", "."])
                .unwrap();
        tk.save(&d.join("tk.json")).unwrap();
        let mut longer = vicrit("c.png");
        longer.original_caption = "a dark blue circle .".into();
        longer.solution_original = "dark blue".into();
        write_vicrit(&d.join("v.jsonl"), &[vicrit("c.png"), longer]).unwrap();
        let base = ConversationsOptions {
            tokenizer: Some(d.join("tk.json")),
            ..options(d, &["v.jsonl"], &[])
        };
        let mut all = Conversations::new(base.clone()).unwrap();
        all.prepare(&ctx(d)).unwrap();
        assert_eq!(all.samples(Split::Train).unwrap().len(), 2);
        let mut filtered = Conversations::new(ConversationsOptions {
            vicrit_equal_tokens: true,
            ..base
        })
        .unwrap();
        filtered.prepare(&ctx(d)).unwrap();
        assert_eq!(filtered.samples(Split::Train).unwrap().len(), 1);
        let err = Conversations::new(ConversationsOptions {
            vicrit_equal_tokens: true,
            ..options(d, &["v.jsonl"], &[])
        })
        .err()
        .unwrap();
        assert!(err.contains("tokenizer"), "{err}");
    }
}
