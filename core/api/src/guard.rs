//! Panic containment for plugin code. A panic cannot unwind from a plugin's
//! copy of the standard library into the host's (the host would abort), so
//! it is caught on the plugin's side: the [`Registrar`](crate::Registrar)'s
//! generic registration functions are compiled into the plugin, and they wrap
//! every factory and every expert and synthesizer it builds in these guards.
//! A panic then becomes an error for that call.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use rand::RngCore;

use crate::expert::{ExpertCorrector, ExpertError, ExpertReply, ExpertRequest};
use crate::synth::{Corruption, ErrorSynthesizer, SynthContext, TokenizedSample};

/// The message of a caught panic.
#[doc(hidden)]
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// Wraps a built component so panics in its fallible calls become errors.
pub(crate) trait Guard {
    /// The guarded component (itself where no call can report an error).
    fn guarded(self) -> Self;
}

macro_rules! unguarded {
    ($($ty:ty),*) => {
        $(impl Guard for $ty {
            fn guarded(self) -> Self {
                self
            }
        })*
    };
}

unguarded!(
    Box<dyn crate::model::ModelBackend>,
    Box<dyn crate::data::DataSource>,
    Arc<dyn crate::schedule::NoiseSchedule>,
    Arc<dyn crate::policy::RefinementPolicy>
);

impl Guard for Arc<dyn ExpertCorrector> {
    fn guarded(self) -> Self {
        Arc::new(GuardedExpert(self))
    }
}

impl Guard for Arc<dyn crate::trainer::Trainer> {
    fn guarded(self) -> Self {
        Arc::new(GuardedTrainer(self))
    }
}

struct GuardedTrainer(Arc<dyn crate::trainer::Trainer>);

impl crate::trainer::Trainer for GuardedTrainer {
    fn in_process(&self) -> bool {
        catch_unwind(AssertUnwindSafe(|| self.0.in_process())).unwrap_or(false)
    }

    fn train(&self, job: &crate::trainer::TrainJob) -> crate::Result<()> {
        catch_unwind(AssertUnwindSafe(|| self.0.train(job))).unwrap_or_else(|payload| {
            Err(crate::Error::invalid(format!(
                "trainer panicked: {}",
                panic_message(payload.as_ref())
            )))
        })
    }
}

impl Guard for Arc<dyn crate::data::CaptionScorer> {
    fn guarded(self) -> Self {
        Arc::new(GuardedScorer(self))
    }
}

struct GuardedScorer(Arc<dyn crate::data::CaptionScorer>);

impl GuardedScorer {
    fn catch<T>(&self, call: impl FnOnce() -> crate::Result<T>) -> crate::Result<T> {
        catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|payload| {
            Err(crate::Error::invalid(format!(
                "caption scorer panicked: {}",
                panic_message(payload.as_ref())
            )))
        })
    }
}

impl crate::data::CaptionScorer for GuardedScorer {
    fn metrics(&self) -> Vec<crate::data::MetricInfo> {
        catch_unwind(AssertUnwindSafe(|| self.0.metrics())).unwrap_or_default()
    }

    fn score(
        &self,
        input: &crate::data::ScoreInput<'_>,
    ) -> crate::Result<crate::data::CaptionScore> {
        self.catch(|| self.0.score(input))
    }

    fn score_all(
        &self,
        inputs: &[crate::data::ScoreInput<'_>],
    ) -> crate::Result<Vec<crate::data::CaptionScore>> {
        self.catch(|| self.0.score_all(inputs))
    }

    fn usage(&self) -> Option<serde_json::Value> {
        catch_unwind(AssertUnwindSafe(|| self.0.usage())).unwrap_or(None)
    }
}

impl Guard for Arc<dyn ErrorSynthesizer> {
    fn guarded(self) -> Self {
        Arc::new(GuardedSynthesizer(self))
    }
}

struct GuardedExpert(Arc<dyn ExpertCorrector>);

type Review<'a> = Pin<Box<dyn Future<Output = Result<ExpertReply, ExpertError>> + Send + 'a>>;

/// Polls a review, turning a panic into a failed review.
struct CatchPanic<'a>(Review<'a>);

impl Future for CatchPanic<'_> {
    type Output = Result<ExpertReply, ExpertError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => Poll::Ready(Err(ExpertError::new(
                false,
                format!("expert panicked: {}", panic_message(payload.as_ref())),
            )
            .with_kind("panic"))),
        }
    }
}

#[async_trait]
impl ExpertCorrector for GuardedExpert {
    fn describe(&self, request: &ExpertRequest) -> Option<String> {
        catch_unwind(AssertUnwindSafe(|| self.0.describe(request))).unwrap_or(None)
    }

    async fn review(&self, request: &ExpertRequest) -> Result<ExpertReply, ExpertError> {
        CatchPanic(self.0.review(request)).await
    }
}

struct GuardedSynthesizer(Arc<dyn ErrorSynthesizer>);

impl ErrorSynthesizer for GuardedSynthesizer {
    fn accepts(&self, sample: &TokenizedSample) -> bool {
        self.0.accepts(sample)
    }

    fn corrupt(
        &self,
        sample: &TokenizedSample,
        mask_prob: f32,
        ctx: &SynthContext<'_>,
        rng: &mut dyn RngCore,
    ) -> crate::Result<Corruption> {
        catch_unwind(AssertUnwindSafe(|| {
            self.0.corrupt(sample, mask_prob, ctx, rng)
        }))
        .unwrap_or_else(|payload| {
            Err(crate::Error::invalid(format!(
                "synthesizer panicked: {}",
                panic_message(payload.as_ref())
            )))
        })
    }
}
