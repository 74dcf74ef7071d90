//! Drafting: the round's model writes answers for the picked prompts.

use std::collections::BTreeMap;

use crate::parallel::map_scoped;
use crate::stage2::{DraftRecord, Journal};
use rediff_api::error::{Error, Result};
use rediff_api::model::{ModelBackend, Prompt};
use rediff_nn::rng;
use rediff_sampler::{Sampler, SamplerSettings};

use super::round::Round;

impl Round<'_, '_> {
    /// Drafts every picked prompt (those not journaled yet), batch by batch,
    /// batches spread over the data-parallel threads. Drafts cycle through the
    /// configured tokens per step; each batch holds one setting.
    pub(super) fn draft_all(&self, model: &dyn ModelBackend) -> Result<Vec<DraftRecord>> {
        let (shared, built, picks, round) = (self.shared, self.built, &self.picks, self.number);
        let path = &self.files.drafts;
        let (run, s2) = (shared.run, &built.config);
        let opened = Journal::<DraftRecord>::open(path)?;
        let journal = opened.journal;
        let mut have: BTreeMap<usize, DraftRecord> =
            opened.records.into_iter().map(|r| (r.index, r)).collect();
        let tps_of = |i: usize| s2.tokens_per_step[i % s2.tokens_per_step.len()];
        let mut settings: Vec<usize> = Vec::new();
        for &t in &s2.tokens_per_step {
            if !settings.contains(&t) {
                settings.push(t);
            }
        }
        let mut batches: Vec<(usize, Vec<usize>)> = Vec::new();
        for &tps in &settings {
            let of_tps: Vec<usize> = (0..picks.len()).filter(|&i| tps_of(i) == tps).collect();
            for chunk in of_tps.chunks(s2.batch_size) {
                batches.push((tps, chunk.to_vec()));
            }
        }
        // Batch numbers seed the sampling noise, so a redone batch is the same batch.
        let todo: Vec<(usize, usize, Vec<usize>)> = batches
            .into_iter()
            .enumerate()
            .filter(|(n, (_, idx))| {
                self.shard.owns_batch(*n) && idx.iter().any(|i| !have.contains_key(i))
            })
            .map(|(n, (tps, idx))| (n, tps, idx))
            .collect();
        let remaining: usize = todo.iter().map(|(_, _, idx)| idx.len()).sum();
        let bar = shared.bar(
            remaining as u64,
            "{prefix:>11} drafts [{bar:25}] {pos}/{len} eta {eta}",
            &format!("round {round}"),
        );
        let threads = run.train.data_parallel.clamp(1, todo.len().max(1));
        let groups: Vec<Vec<&(usize, usize, Vec<usize>)>> = (0..threads)
            .map(|k| todo.iter().skip(k).step_by(threads).collect())
            .collect();
        let results = map_scoped(&groups, |group| -> Result<Vec<DraftRecord>> {
            let mut made = Vec::new();
            for &(batch_no, tps, ref idx) in group.iter().copied() {
                if shared
                    .opts
                    .interrupt
                    .load(std::sync::atomic::Ordering::SeqCst)
                {
                    return Err(Error::Interrupted);
                }
                let prompts: Vec<Prompt> = idx
                    .iter()
                    .map(|&i| {
                        let ex = &shared.examples[picks[i]];
                        Prompt {
                            image: Some(ex.image.clone()),
                            ids: ex.prompt.clone(),
                        }
                    })
                    .collect();
                let context = model.encode_prompts(&prompts)?;
                let sampler = Sampler {
                    model,
                    schedule: shared.schedule,
                    policy: built.sampler.as_ref(),
                    policy_name: s2.sampler.kind(),
                    settings: SamplerSettings::for_tokens_per_step(
                        run.gen_length,
                        s2.block_length,
                        tps,
                        s2.temperature,
                    ),
                };
                let mut noise = rng::stream(
                    run.seed,
                    &format!("stage2/round-{round}/drafts"),
                    batch_no as u64,
                );
                let generation = sampler.generate(&context, &mut noise, None)?;
                let answers = generation.outputs();
                let mut records = Vec::with_capacity(idx.len());
                for (k, &i) in idx.iter().enumerate() {
                    if have.contains_key(&i) {
                        continue;
                    }
                    records.push(DraftRecord {
                        index: i,
                        sample: shared.train_samples[picks[i]].id.clone(),
                        tokens_per_step: tps,
                        draft: model.tokenizer().decode(&answers[k])?,
                        ended: generation.stops[k].is_some(),
                    });
                }
                journal.append_all(&records)?;
                bar.inc(idx.len() as u64);
                made.extend(records);
            }
            Ok(made)
        });
        bar.finish_and_clear();
        for r in results {
            for record in r? {
                have.insert(record.index, record);
            }
        }
        journal.sync()?;
        Ok(have.into_values().collect())
    }
}
