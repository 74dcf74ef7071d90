//! Checkpoint files: weights as safetensors, resumable trainer state, and
//! atomic directory replacement so an interrupted save never leaves a torn
//! checkpoint behind.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use rediff_api::{Error, Result};

/// Reads every tensor of a safetensors file, naming the file on failure
/// (missing, truncated, corrupt).
pub fn read_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    if !path.exists() {
        return Err(Error::checkpoint(path, "file not found"));
    }
    candle_core::safetensors::load(path, device).map_err(|e| {
        Error::checkpoint(
            path,
            format!("unreadable safetensors (truncated or corrupt?): {e}"),
        )
    })
}

/// Writes `tensors` to a safetensors file, naming the file on failure; the
/// counterpart of [`read_safetensors`].
pub fn write_safetensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    candle_core::safetensors::save(tensors, path).map_err(|e| Error::checkpoint(path, e))
}

/// Fills every variable of `varmap` from a safetensors file.
///
/// Missing tensors, shape mismatches and tensors the model does not use are
/// all errors naming the file and the tensor.
pub fn load_varmap(varmap: &VarMap, path: &Path) -> Result<()> {
    let device = {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::invalid("lock poisoned"))?;
        data.values()
            .next()
            .map(|v| v.device().clone())
            .unwrap_or(Device::Cpu)
    };
    let tensors = read_safetensors(path, &device)?;
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::invalid("lock poisoned"))?;
    for (name, var) in data.iter() {
        let t = tensors
            .get(name)
            .ok_or_else(|| Error::checkpoint(path, format!("missing tensor `{name}`")))?;
        if t.dims() != var.dims() {
            return Err(Error::checkpoint(
                path,
                format!(
                    "tensor `{name}` has shape {:?}, the model expects {:?}",
                    t.dims(),
                    var.dims()
                ),
            ));
        }
        var.set(&t.to_dtype(var.dtype())?)?;
    }
    if let Some(extra) = tensors.keys().find(|k| !data.contains_key(*k)) {
        return Err(Error::checkpoint(
            path,
            format!("unexpected tensor `{extra}` (not used by this model)"),
        ));
    }
    Ok(())
}

/// Copies every variable's value from `from` into `to` (same names and
/// shapes), e.g. to start a stage from another stage's weights.
pub fn copy_varmap(from: &VarMap, to: &VarMap) -> Result<()> {
    let src = from
        .data()
        .lock()
        .map_err(|_| Error::invalid("lock poisoned"))?;
    let dst = to
        .data()
        .lock()
        .map_err(|_| Error::invalid("lock poisoned"))?;
    if src.len() != dst.len() {
        return Err(Error::invalid(format!(
            "cannot copy weights: {} variables into a model with {}",
            src.len(),
            dst.len()
        )));
    }
    for (name, var) in dst.iter() {
        let value = src
            .get(name)
            .ok_or_else(|| Error::invalid(format!("cannot copy weights: `{name}` missing")))?;
        if value.dims() != var.dims() {
            return Err(Error::invalid(format!(
                "cannot copy weights: `{name}` has shape {:?}, expected {:?}",
                value.dims(),
                var.dims()
            )));
        }
        var.set(value.as_tensor())?;
    }
    Ok(())
}

/// Saves every variable of `varmap` to a safetensors file.
pub fn save_varmap(varmap: &VarMap, path: &Path) -> Result<()> {
    varmap
        .save(path)
        .map_err(|e| Error::checkpoint(path, format!("cannot write: {e}")))
}

/// Writes `value` as pretty JSON.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        source: e,
    })?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

/// Reads JSON, naming the file on failure.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Builds a directory under a temporary name with `fill`, then swaps it into
/// place, so readers see either the old or the new directory, never a mix.
pub fn write_dir_atomically(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "checkpoint".into());
    let tmp = parent.join(format!(".{name}.tmp"));
    let old = parent.join(format!(".{name}.old"));
    for p in [&tmp, &old] {
        if p.exists() {
            std::fs::remove_dir_all(p).map_err(|e| Error::io(p, e))?;
        }
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    fill(&tmp)?;
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

/// Progress of a training stage, saved beside its resumable checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Stage name.
    pub stage: String,
    /// Optimiser steps completed.
    pub step: usize,
    /// Total steps planned.
    pub total_steps: usize,
    /// The pipeline seed the stage was started with.
    pub seed: u64,
    /// Loss curve so far: `(step, mean loss since the previous point)`.
    pub losses: Vec<(usize, f32)>,
    /// Seconds of training so far (across resumes).
    pub seconds: f64,
    /// Loss sum and count since the last logged point, so a resumed run logs
    /// exactly what an uninterrupted one would.
    #[serde(default)]
    pub pending_loss: (f64, usize),
    /// Examples made per synthesizer so far.
    #[serde(default)]
    pub synthesized: std::collections::BTreeMap<String, usize>,
    /// Positions per loss group so far.
    #[serde(default)]
    pub group_positions: std::collections::BTreeMap<String, usize>,
    /// Pairs or samples dropped so far, by reason.
    #[serde(default)]
    pub dropped: std::collections::BTreeMap<String, usize>,
}

/// File names inside a resumable checkpoint directory.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// Trainer progress file.
pub const STATE_FILE: &str = "trainer_state.json";

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use candle_nn::{Init, VarBuilder};

    fn varmap(shape: usize, value: f64) -> VarMap {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        vb.get_with_hints(shape, "a.weight", Init::Const(value))
            .unwrap();
        vm
    }

    #[test]
    fn varmap_round_trip_and_located_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        save_varmap(&varmap(3, 2.0), &path).unwrap();
        let vm = varmap(3, 0.0);
        load_varmap(&vm, &path).unwrap();
        assert_eq!(
            vm.data().lock().unwrap()["a.weight"]
                .to_vec1::<f32>()
                .unwrap(),
            vec![2.0; 3]
        );
        let err = load_varmap(&varmap(4, 0.0), &path).unwrap_err().to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("shape"),
            "{err}"
        );
        // Truncate the file.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_varmap(&vm, &path).unwrap_err().to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("truncated"),
            "{err}"
        );
    }

    #[test]
    fn atomic_dir_replaces_contents() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("latest");
        write_dir_atomically(&target, |d| {
            std::fs::write(d.join("a"), "1").map_err(|e| Error::io(d, e))
        })
        .unwrap();
        write_dir_atomically(&target, |d| {
            std::fs::write(d.join("b"), "2").map_err(|e| Error::io(d, e))
        })
        .unwrap();
        assert!(!target.join("a").exists());
        assert_eq!(std::fs::read_to_string(target.join("b")).unwrap(), "2");
        // A failing fill leaves the previous directory intact.
        let r = write_dir_atomically(&target, |_| Err(Error::invalid("boom")));
        assert!(r.is_err());
        assert!(target.join("b").exists());
    }
}
