//! `remdm`: remasking after ReMDM (Wang, Schiff, Sahoo and Kuleshov, 2025,
//! "Remasking Discrete Diffusion Models with Inference-Time Scaling",
//! <https://arxiv.org/abs/2503.00307>; code: kuleshov-group/remdm
//! `diffusion.py`, `_ddpm_caching_update`).
//!
//! Per position and step, ReMDM's posterior with the linear schedule
//! `alpha_t = 1 - t`, mapped onto a block of `S` steps as LLaDA maps it:
//! at step `k`, `alpha_t = k / S` and `alpha_s = (k + 1) / S`.
//! - a decoded token goes back to `[MASK]` with probability `sigma_t` (it is
//!   never rewritten to another token: ReMDM's `x_theta` is one-hot there);
//! - a mask is unmasked (to the sampler's `x0`) with probability
//!   `(alpha_s - (1 - sigma_t) alpha_t) / (1 - alpha_t)`.
//!
//! `sigma_t` follows the `sampler`:
//! - `cap`: `min(eta, (1 - alpha_s) / alpha_t)` (the scripts' `eta` 0.008);
//! - `rescale`: `eta * sigma_max`, `sigma_max = min(1, (1 - alpha_s) / alpha_t)` (0.015);
//! - `conf`: per position `softmax(-psi) * sigma_max` over the decoded
//!   positions of the block, `psi` the confidence a token had when it was
//!   unmasked; masks use `sigma = 0` (no `eta`);
//! - `loop`: plain MDLM steps while `t > t_on` (with `alpha` ramped to
//!   `alpha_on`) and while `t <= t_off` (ramped to 1), and in between a loop
//!   at constant `alpha = alpha_on` with `sigma = eta` (the scripts' `eta`
//!   0.02, `t_on` 0.55, `t_off` 0.05, `alpha_on` 0.9).
//!
//! Remasking stays inside the current block (earlier blocks are final, as
//! semi-autoregressive decoding implies) and before the stop. The block's
//! last step unmasks every remaining mask with no remasking: it plays the
//! part of ReMDM's final `noise_removal` pass without an extra forward.
//! `x0` is the sampler's choice: at `temperature = 1` it is a draw from the
//! model's distribution, as in ReMDM (which also applies top-p 0.9; rediff
//! samples from the full distribution).

use rand::{Rng, RngCore};
use rediff_api::policy::{RefinementPolicy, StepPlan, StepView};
use serde::Deserialize;

/// ReMDM's `sampling.sampler` variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemdmSampler {
    /// `remdm-cap`.
    #[serde(alias = "remdm-cap")]
    Cap,
    /// `remdm-rescale`.
    #[serde(alias = "remdm-rescale")]
    Rescale,
    /// `remdm-conf`.
    #[serde(alias = "remdm-conf")]
    Conf,
    /// `remdm-loop`.
    #[serde(alias = "remdm-loop")]
    Loop,
}

/// Options of the `remdm` policy.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemdmOptions {
    /// Which `sigma_t` schedule (default `cap`).
    pub sampler: RemdmSampler,
    /// `eta`; absent = the released scripts' value for the sampler (cap
    /// 0.008, rescale 0.015, loop 0.02; `conf` takes none).
    pub eta: Option<f64>,
    /// `loop`: where the loop phase starts, in `t` (default 0.55).
    pub t_on: f64,
    /// `loop`: where it ends (default 0.05).
    pub t_off: f64,
    /// `loop`: the constant `alpha` of the loop phase (default 0.9).
    pub alpha_on: f64,
}

impl Default for RemdmOptions {
    fn default() -> Self {
        Self {
            sampler: RemdmSampler::Cap,
            eta: None,
            t_on: 0.55,
            t_off: 0.05,
            alpha_on: 0.9,
        }
    }
}

/// ReMDM remasking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Remdm {
    options: RemdmOptions,
    eta: f64,
}

/// One step's schedule: `alpha_t`, `alpha_s` and the scalar `sigma`
/// (`None` for `conf`, which is per position).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemdmStep {
    /// `alpha` before the step.
    pub alpha_t: f64,
    /// `alpha` after it.
    pub alpha_s: f64,
    /// The remasking probability of a decoded token.
    pub sigma: Option<f64>,
    /// `min(1, (1 - alpha_s) / alpha_t)` (1 when `alpha_t = 0`).
    pub sigma_max: f64,
}

impl RemdmStep {
    /// The unmask probability of a mask whose remasking probability is `sigma`.
    pub fn unmask_probability(&self, sigma: f64) -> f64 {
        let denom = 1.0 - self.alpha_t;
        if denom <= 0.0 {
            return 1.0;
        }
        ((self.alpha_s - (1.0 - sigma) * self.alpha_t) / denom).clamp(0.0, 1.0)
    }
}

impl Remdm {
    /// Validates the options.
    pub fn new(options: RemdmOptions) -> Result<Self, String> {
        let eta = match (options.sampler, options.eta) {
            (RemdmSampler::Conf, Some(_)) => {
                return Err(
                    "the `conf` sampler takes no eta (its weights are softmax(-psi))".into(),
                )
            }
            (_, Some(e)) => e,
            (RemdmSampler::Cap, None) => 0.008,
            (RemdmSampler::Rescale, None) => 0.015,
            (RemdmSampler::Loop, None) => 0.02,
            (RemdmSampler::Conf, None) => 0.0,
        };
        super::check_unit("eta", eta)?;
        let RemdmOptions {
            t_on,
            t_off,
            alpha_on,
            ..
        } = options;
        if !(0.0 <= t_off && t_off < t_on && t_on <= 1.0) {
            return Err(format!(
                "need 0 <= t_off < t_on <= 1, got t_off {t_off}, t_on {t_on}"
            ));
        }
        if !(alpha_on > 0.0 && alpha_on < 1.0) {
            return Err(format!("alpha_on must lie in (0, 1), got {alpha_on}"));
        }
        Ok(Self { options, eta })
    }

    /// The schedule at step `k` of `steps` (`t = 1 - k / steps`).
    pub fn step(&self, k: usize, steps: usize) -> RemdmStep {
        let steps = steps.max(1);
        let t = steps.saturating_sub(k) as f64 / steps as f64;
        let s = steps.saturating_sub(k + 1) as f64 / steps as f64;
        let sigma_max = |a_t: f64, a_s: f64| {
            if a_t <= 0.0 {
                1.0
            } else {
                ((1.0 - a_s) / a_t).clamp(0.0, 1.0)
            }
        };
        let plain = |alpha_t: f64, alpha_s: f64, sigma: Option<f64>| RemdmStep {
            alpha_t,
            alpha_s,
            sigma,
            sigma_max: sigma_max(alpha_t, alpha_s),
        };
        let (a_t, a_s) = (1.0 - t, (1.0 - s).min(1.0));
        let sm = sigma_max(a_t, a_s);
        match self.options.sampler {
            RemdmSampler::Cap => {
                let cap = if a_t <= 0.0 {
                    self.eta
                } else {
                    (1.0 - a_s) / a_t
                };
                plain(a_t, a_s, Some(self.eta.min(cap).max(0.0)))
            }
            RemdmSampler::Rescale => plain(a_t, a_s, Some(self.eta * sm)),
            RemdmSampler::Conf => plain(a_t, a_s, None),
            RemdmSampler::Loop => {
                let RemdmOptions {
                    t_on,
                    t_off,
                    alpha_on,
                    ..
                } = self.options;
                if t > t_on {
                    let f = alpha_on / (1.0 - t_on);
                    plain((1.0 - t) * f, ((1.0 - s) * f).min(1.0), Some(0.0))
                } else if t <= t_off {
                    let g = |u: f64| (1.0 - u.max(0.0) * (1.0 - alpha_on) / t_off).min(1.0);
                    plain(g(t), g(s), Some(0.0))
                } else {
                    RemdmStep {
                        alpha_t: alpha_on,
                        alpha_s: alpha_on,
                        sigma: Some(self.eta),
                        sigma_max: sigma_max(alpha_on, alpha_on),
                    }
                }
            }
        }
    }
}

impl RefinementPolicy for Remdm {
    fn plan(&self, view: &StepView<'_>, rng: &mut dyn RngCore) -> StepPlan {
        // The block's last scheduled step unmasks everything left.
        if view.step + 1 >= view.steps {
            return StepPlan::unmask(view.unmaskable().map(|p| p.position).collect());
        }
        let st = self.step(view.step, view.steps);
        let decoded: Vec<_> = view.decoded().filter(|p| p.before_stop).collect();
        // conf: eta_l = softmax(-psi) over the decoded positions.
        let weights: Vec<f64> = match st.sigma {
            Some(s) => vec![s; decoded.len()],
            None => {
                let psi = |p: &rediff_api::policy::PositionView| match p.state {
                    rediff_api::policy::PositionState::Decoded { confidence, .. } => confidence,
                    rediff_api::policy::PositionState::Masked => 0.0,
                };
                let e: Vec<f64> = decoded.iter().map(|p| (-psi(p)).exp()).collect();
                let z: f64 = e.iter().sum();
                e.iter().map(|x| x / z * st.sigma_max).collect()
            }
        };
        let mut plan = StepPlan::default();
        for (p, sigma) in decoded.iter().zip(&weights) {
            if rng.random::<f64>() < *sigma {
                plan.remask.push(p.position);
            }
        }
        let p_un = st.unmask_probability(st.sigma.unwrap_or(0.0));
        for p in view.unmaskable() {
            if rng.random::<f64>() < p_un {
                plan.unmask.push(p.position);
            }
        }
        plan
    }

    fn revises(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::super::scripted::{plan, positions, MASK};
    use super::*;

    fn remdm(sampler: RemdmSampler, eta: Option<f64>) -> Remdm {
        Remdm::new(RemdmOptions {
            sampler,
            eta,
            ..Default::default()
        })
        .unwrap()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn cap_and_rescale_follow_the_paper() {
        // S = 4, k = 1: alpha_t = 0.25, alpha_s = 0.5; sigma_max = min(1, 0.5/0.25) = 1.
        let st = remdm(RemdmSampler::Cap, Some(0.1)).step(1, 4);
        close(st.alpha_t, 0.25);
        close(st.alpha_s, 0.5);
        close(st.sigma.unwrap(), 0.1);
        // p_un = (0.5 - 0.9 * 0.25) / 0.75.
        close(st.unmask_probability(0.1), (0.5 - 0.9 * 0.25) / 0.75);
        // k = 2: alpha_t = 0.5, alpha_s = 0.75: cap (1 - 0.75)/0.5 = 0.5 > eta.
        close(
            remdm(RemdmSampler::Cap, Some(0.9))
                .step(2, 4)
                .sigma
                .unwrap(),
            0.5,
        );
        let st = remdm(RemdmSampler::Rescale, Some(0.5)).step(2, 4);
        close(st.sigma_max, 0.5);
        close(st.sigma.unwrap(), 0.25);
        // Without remasking, MDLM: p_un = (alpha_s - alpha_t) / (1 - alpha_t).
        close(st.unmask_probability(0.0), 0.25 / 0.5);
        // Defaults are the scripts' eta.
        close(
            remdm(RemdmSampler::Cap, None).step(1, 4).sigma.unwrap(),
            0.008,
        );
    }

    #[test]
    fn loop_holds_alpha_in_its_phase() {
        let r = remdm(RemdmSampler::Loop, None);
        // S = 20: t = 1 - k/20. k = 2: t = 0.9 > t_on: ramp, no remask.
        let st = r.step(2, 20);
        close(st.alpha_t, 0.1 * 0.9 / 0.45);
        close(st.sigma.unwrap(), 0.0);
        // k = 10: t = 0.5 in the loop: alpha = 0.9, sigma = eta.
        let st = r.step(10, 20);
        close(st.alpha_t, 0.9);
        close(st.alpha_s, 0.9);
        close(st.sigma.unwrap(), 0.02);
        close(st.unmask_probability(0.02), 0.02 * 0.9 / 0.1);
        // k = 19: t = 0.05 <= t_off: ramps to alpha_s = 1.
        let st = r.step(19, 20);
        close(st.alpha_s, 1.0);
    }

    #[test]
    fn decoded_tokens_are_remasked_never_revised() {
        // Every decoded token remasked with sigma = 1 (eta 1 at k = 1 of 4: cap 2).
        let r = remdm(RemdmSampler::Cap, Some(1.0));
        let b = positions(
            0,
            &[(1, 2, 0.9, 0.1), (MASK, 3, 0.9, 0.0), (4, 4, 0.9, 0.9)],
        );
        let p = plan(&r, &b, 1, 4, 1, None, 0);
        assert_eq!(p.remask, vec![0, 2]);
        assert!(p.revise.is_empty());
        // p_un = (0.5 - 0) / 0.75 with sigma 1: (0.5 - 0 * 0.25)/0.75 = 2/3;
        // over many seeds the mask is unmasked about 2/3 of the time.
        let n = 3000;
        let hits = (0..n)
            .filter(|&seed| !plan(&r, &b, 1, 4, 1, None, seed).unmask.is_empty())
            .count() as f64;
        assert!((hits / n as f64 - 2.0 / 3.0).abs() < 0.03, "{hits}");
    }

    #[test]
    fn the_last_step_unmasks_everything_and_remasks_nothing() {
        let r = remdm(RemdmSampler::Loop, None);
        let b = positions(
            0,
            &[(1, 2, 0.9, 0.1), (MASK, 3, 0.1, 0.0), (MASK, 4, 0.2, 0.0)],
        );
        let p = plan(&r, &b, 3, 4, 1, None, 0);
        assert_eq!(p.unmask, vec![1, 2]);
        assert!(p.remask.is_empty());
    }

    #[test]
    fn conf_weights_less_confident_tokens_more() {
        let r = remdm(RemdmSampler::Conf, None);
        let mut b = positions(0, &[(1, 2, 0.9, 0.1), (2, 3, 0.1, 0.0)]);
        for (p, psi) in b.iter_mut().zip([0.0, 1.0]) {
            p.state = rediff_api::policy::PositionState::Decoded {
                since: 0,
                confidence: psi,
            };
        }
        // k = 1 of 2... use S = 3, k = 1: alpha_t = 1/3, alpha_s = 2/3, sigma_max = 1.
        let n = 4000;
        let mut counts = [0usize; 2];
        for seed in 0..n {
            for j in plan(&r, &b, 1, 3, 1, None, seed).remask {
                counts[j] += 1;
            }
        }
        // eta = softmax(-psi) = (e^0, e^-1) / (1 + e^-1).
        let z = 1.0 + (-1f64).exp();
        let share = |c: usize| c as f64 / n as f64;
        assert!((share(counts[0]) - 1.0 / z).abs() < 0.03, "{counts:?}");
        assert!(
            (share(counts[1]) - (-1f64).exp() / z).abs() < 0.03,
            "{counts:?}"
        );
    }

    #[test]
    fn bad_options_are_refused() {
        let bad = |o: RemdmOptions| Remdm::new(o).is_err();
        assert!(bad(RemdmOptions {
            sampler: RemdmSampler::Conf,
            eta: Some(0.1),
            ..Default::default()
        }));
        assert!(bad(RemdmOptions {
            eta: Some(2.0),
            ..Default::default()
        }));
        assert!(bad(RemdmOptions {
            t_on: 0.01,
            ..Default::default()
        }));
        assert!(bad(RemdmOptions {
            alpha_on: 1.0,
            ..Default::default()
        }));
    }
}
