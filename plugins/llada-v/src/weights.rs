//! Sharded safetensors, memory-mapped, with a ledger of which tensors the
//! model took: a checkpoint loads only when every expected tensor is present
//! with its shape and every tensor in the files is used (or known unused).
//!
//! Each tensor is copied once from the mapping into its storage (candle's
//! tensors own their memory), then its pages are released from the mapping
//! (`MADV_DONTNEED`), so loading never holds much more than the weights
//! themselves in resident memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use memmap2::{Mmap, UncheckedAdvice};
use rediff_api::{Error, Result};
use serde::Deserialize;

/// Index file of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Weights file of an unsharded checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

/// Where one tensor lives in its shard.
#[derive(Debug, Clone)]
struct Entry {
    dtype: DType,
    shape: Vec<usize>,
    /// Byte range in the mapped file.
    start: usize,
    end: usize,
}

/// One mapped safetensors file and its tensor table.
struct Shard {
    path: PathBuf,
    map: Mmap,
    entries: BTreeMap<String, Entry>,
}

impl Shard {
    fn open(path: &Path) -> Result<Self> {
        let bad = |m: String| {
            Error::checkpoint(
                path,
                format!("unreadable safetensors (truncated or corrupt?): {m}"),
            )
        };
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the file is only read; a checkpoint changing under a
        // running process is outside what any loader can defend against.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let st = safetensors::SafeTensors::deserialize(&map).map_err(|e| bad(e.to_string()))?;
        let mut entries = BTreeMap::new();
        for (name, view) in st.tensors() {
            let dtype = match view.dtype() {
                safetensors::Dtype::F32 => DType::F32,
                safetensors::Dtype::BF16 => DType::BF16,
                safetensors::Dtype::F16 => DType::F16,
                safetensors::Dtype::F64 => DType::F64,
                other => {
                    return Err(bad(format!(
                        "tensor `{name}` has unsupported dtype {other:?}"
                    )))
                }
            };
            let start = view.data().as_ptr() as usize - map.as_ptr() as usize;
            entries.insert(
                name,
                Entry {
                    dtype,
                    shape: view.shape().to_vec(),
                    start,
                    end: start + view.data().len(),
                },
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            map,
            entries,
        })
    }

    /// Copies `e` out of the mapping onto `device`, then drops its pages.
    fn load(&self, e: &Entry, device: &Device) -> candle_core::Result<Tensor> {
        self.load_range(e.start..e.end, e.dtype, &e.shape, device)
    }

    /// Copies the bytes `range` of the mapping, a tensor of `shape`, onto
    /// `device`, then drops their pages.
    fn load_range(
        &self,
        range: std::ops::Range<usize>,
        dtype: DType,
        shape: &[usize],
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let (start, end) = (range.start, range.end);
        let t = Tensor::from_raw_buffer(&self.map[start..end], dtype, shape, device)?;
        // Release the whole pages inside the tensor's range; neighbours'
        // partial pages stay (they will be read again if needed).
        let page = 4096;
        let (a, b) = (start.div_ceil(page) * page, end / page * page);
        if b > a {
            // SAFETY: the mapping is read-only and file-backed; dropping its
            // pages only makes a later read fetch them from the file again.
            let _ = unsafe {
                self.map
                    .unchecked_advise_range(UncheckedAdvice::DontNeed, a, b - a)
            };
        }
        Ok(t)
    }
}

/// The memory-mapped shards of a checkpoint directory.
pub struct ShardedWeights {
    shards: Vec<Shard>,
    /// Tensor name -> shard number.
    routing: HashMap<String, usize>,
    used: Mutex<BTreeSet<String>>,
}

impl ShardedWeights {
    /// Maps every shard named by `model.safetensors.index.json` (or the single
    /// `model.safetensors`). Each tensor must live in the shard the index
    /// names; errors name the file.
    pub fn open(dir: &Path) -> Result<Arc<Self>> {
        let index_path = dir.join(INDEX_FILE);
        let (files, index) = if index_path.exists() {
            let text = std::fs::read_to_string(&index_path)
                .map_err(|e| Error::checkpoint(&index_path, format!("cannot read: {e}")))?;
            let index: Index = serde_json::from_str(&text)
                .map_err(|e| Error::checkpoint(&index_path, format!("invalid index: {e}")))?;
            let files: BTreeSet<String> = index.weight_map.values().cloned().collect();
            (files.into_iter().collect::<Vec<_>>(), Some(index))
        } else if dir.join(SINGLE_FILE).exists() {
            (vec![SINGLE_FILE.to_string()], None)
        } else {
            return Err(Error::checkpoint(
                dir,
                format!("neither {INDEX_FILE} nor {SINGLE_FILE} is here"),
            ));
        };
        let mut shards = Vec::with_capacity(files.len());
        let mut routing = HashMap::new();
        for (n, file) in files.iter().enumerate() {
            let path = dir.join(file);
            if !path.exists() {
                return Err(Error::checkpoint(
                    &path,
                    format!("shard named by {INDEX_FILE} is missing"),
                ));
            }
            let shard = Shard::open(&path)?;
            for name in shard.entries.keys() {
                if let Some(prev) = routing.insert(name.clone(), n) {
                    return Err(Error::checkpoint(
                        &path,
                        format!("tensor `{name}` is also in {}", files[prev]),
                    ));
                }
            }
            shards.push(shard);
        }
        if let Some(index) = index {
            for (name, file) in &index.weight_map {
                match routing.get(name) {
                    Some(&n) if files[n] == *file => {}
                    Some(&n) => {
                        return Err(Error::checkpoint(
                            &index_path,
                            format!(
                                "tensor `{name}` is listed in {file} but stored in {}",
                                files[n]
                            ),
                        ))
                    }
                    None => {
                        return Err(Error::checkpoint(
                            dir.join(file),
                            format!("tensor `{name}` listed in {INDEX_FILE} is not in this shard"),
                        ))
                    }
                }
            }
            if let Some(extra) = routing.keys().find(|k| !index.weight_map.contains_key(*k)) {
                return Err(Error::checkpoint(
                    &index_path,
                    format!(
                        "tensor `{extra}` is in {} but not in the index",
                        files[routing[extra]]
                    ),
                ));
            }
        }
        Ok(Arc::new(Self {
            shards,
            routing,
            used: Mutex::new(BTreeSet::new()),
        }))
    }

    /// A `VarBuilder` over these weights, converting to `dtype` on `device`.
    pub fn var_builder(self: &Arc<Self>, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(Tracked(self.clone())), dtype, device.clone())
    }

    /// Every tensor name in the files.
    pub fn names(&self) -> BTreeSet<String> {
        self.routing.keys().cloned().collect()
    }

    /// Total bytes of tensor data in the files.
    pub fn data_bytes(&self) -> usize {
        self.shards
            .iter()
            .flat_map(|s| s.entries.values())
            .map(|e| e.end - e.start)
            .sum()
    }

    /// Errors naming the first tensor in the files the model did not take,
    /// unless `known_unused` says the reference stores it without using it.
    pub fn check_all_used(&self, known_unused: impl Fn(&str) -> bool) -> Result<()> {
        let used = self
            .used
            .lock()
            .map_err(|_| Error::invalid("lock poisoned"))?;
        let unused: Vec<&String> = self
            .routing
            .keys()
            .filter(|k| !used.contains(*k) && !known_unused(k))
            .collect();
        match unused.iter().min() {
            None => Ok(()),
            Some(name) => Err(Error::checkpoint(
                &self.shards[self.routing[*name]].path,
                format!(
                    "tensor `{name}` is not used by the model ({} unused in all; renamed or from another architecture?)",
                    unused.len()
                ),
            )),
        }
    }

    fn load(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let Some(&n) = self.routing.get(name) else {
            candle_core::bail!("missing tensor `{name}` (the model expects it; no shard has it)")
        };
        let shard = &self.shards[n];
        let t = shard
            .load(&shard.entries[name], dev)
            .map_err(|e| {
                candle_core::Error::Msg(format!("{}: tensor `{name}`: {e}", shard.path.display()))
            })?
            .to_dtype(dtype)?;
        if let Ok(mut used) = self.used.lock() {
            used.insert(name.to_string());
        }
        Ok(t)
    }
}

/// The `VarBuilder` backend recording every name it hands out.
struct Tracked(Arc<ShardedWeights>);

impl SimpleBackend for Tracked {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.0.load(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!(
                "tensor `{name}` has shape {:?}, the model expects {:?}",
                t.dims(),
                s.dims()
            );
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.load(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.routing.contains_key(name)
    }
}

impl ShardedWeights {
    /// Rows `rows` of the 2-D tensor `name` as f32 on the CPU, read
    /// straight from the mapping (to quantize a large matrix a slice at a
    /// time); marks `name` used.
    pub fn rows_f32(
        &self,
        name: &str,
        rows: std::ops::Range<usize>,
    ) -> candle_core::Result<Tensor> {
        let Some(&n) = self.routing.get(name) else {
            candle_core::bail!("missing tensor `{name}` (the model expects it; no shard has it)")
        };
        let shard = &self.shards[n];
        let e = &shard.entries[name];
        let [height, width] = e.shape[..] else {
            candle_core::bail!(
                "{}: tensor `{name}` has shape {:?}, not a matrix",
                shard.path.display(),
                e.shape
            )
        };
        if rows.end > height || rows.start > rows.end {
            candle_core::bail!("rows {rows:?} outside tensor `{name}`'s {height}");
        }
        let stride = width * e.dtype.size_in_bytes();
        let t = shard.load_range(
            e.start + rows.start * stride..e.start + rows.end * stride,
            e.dtype,
            &[rows.len(), width],
            &Device::Cpu,
        )?;
        if let Ok(mut used) = self.used.lock() {
            used.insert(name.to_string());
        }
        t.to_dtype(DType::F32)
    }

    /// Marks `name` used without loading it (a tensor that another file,
    /// such as a GGUF of the quantized layers, replaces).
    pub fn mark_used(&self, name: &str) {
        if let Ok(mut used) = self.used.lock() {
            used.insert(name.to_string());
        }
    }

    /// The stored shape of `name`, if a shard has it.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let &n = self.routing.get(name)?;
        self.shards[n].entries.get(name).map(|e| e.shape.clone())
    }
}
