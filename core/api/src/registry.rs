//! The component registry: `(component kind, name) -> factory`.
//!
//! Built-in components and dynamically loaded plugins register through the
//! same [`Registrar`], one [`Plugin`] at a time, so the record of where each
//! component came from is always complete.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use serde::Serialize;

use crate::data::{CaptionScorer, DataSource};
pub use crate::device::LoadOptions;
use crate::device::WeightDtype;
use crate::error::{Error, Result};
use crate::expert::ExpertCorrector;
pub use crate::kind::ComponentKind;
use crate::model::ModelBackend;
use crate::policy::RefinementPolicy;
use crate::schedule::NoiseSchedule;
use crate::spec::ComponentSpec;
use crate::synth::ErrorSynthesizer;
use crate::tokens::TextTokenizer;
use crate::trainer::Trainer;

/// What a factory may need besides its own options.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildContext {
    /// The pipeline seed (factories derive their own streams from it).
    pub seed: u64,
    /// The tokenizer the data source defines, when it defines one.
    pub tokenizer: Option<TextTokenizer>,
    /// Device for models.
    pub device: Device,
    /// Directory relative paths in component options resolve against: the
    /// pipeline file's directory (`None`: the current directory).
    pub base_dir: Option<std::path::PathBuf>,
    /// Loads checkpoint directories with the registered loaders (for
    /// components that use a model of their own, like the `model` expert).
    pub checkpoints: Option<CheckpointLoader>,
    /// The directory the run or command writes to, for components that keep
    /// files of their own (a judge's call cache); `None` where nothing runs
    /// (`rediff check`).
    pub out_dir: Option<std::path::PathBuf>,
}

/// A handle on the registry's checkpoint loaders (by `config.json`'s
/// `model_type`), usable after the registry is gone.
#[derive(Clone)]
pub struct CheckpointLoader(Arc<BTreeMap<String, Loader>>);

impl fmt::Debug for CheckpointLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CheckpointLoader")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CheckpointLoader {
    /// Loads `dir` with the loader its `config.json`'s `model_type` names.
    pub fn load(&self, dir: &Path, opts: &LoadOptions) -> Result<Box<dyn ModelBackend>> {
        load_checkpoint(&self.0, dir, opts)
    }
}

/// The `model_type` a checkpoint directory's `config.json` names, with the
/// file (for errors).
fn model_type_of(dir: &Path) -> Result<(String, std::path::PathBuf)> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| Error::checkpoint(&config_path, format!("cannot read: {e}")))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::checkpoint(&config_path, format!("invalid JSON: {e}")))?;
    let model_type = value
        .get("model_type")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::checkpoint(&config_path, "no `model_type` field"))?;
    Ok((model_type.to_string(), config_path))
}

/// The entry of `dir`'s `model_type` in `map`, or an error naming the file
/// and the known types.
fn for_model_type<'m, F>(map: &'m BTreeMap<String, F>, dir: &Path, what: &str) -> Result<&'m F> {
    let (model_type, config_path) = model_type_of(dir)?;
    map.get(&model_type).ok_or_else(|| {
        Error::checkpoint(
            &config_path,
            format!(
                "no {what} for model_type `{model_type}`; known: {}",
                map.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    })
}

fn load_checkpoint(
    loaders: &BTreeMap<String, Loader>,
    dir: &Path,
    opts: &LoadOptions,
) -> Result<Box<dyn ModelBackend>> {
    for_model_type(loaders, dir, "loader")?(dir, opts)
}

impl BuildContext {
    /// A context with `seed`, on the CPU, nothing else set.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            ..Default::default()
        }
    }

    /// With the data source's tokenizer.
    #[doc(hidden)]
    pub fn with_tokenizer(mut self, tokenizer: Option<TextTokenizer>) -> Self {
        self.tokenizer = tokenizer;
        self
    }

    /// With the device models are built on.
    #[doc(hidden)]
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// With the directory relative paths resolve against.
    #[doc(hidden)]
    pub fn with_base_dir(mut self, base_dir: Option<std::path::PathBuf>) -> Self {
        self.base_dir = base_dir;
        self
    }

    /// With the registered checkpoint loaders.
    #[doc(hidden)]
    pub fn with_checkpoints(mut self, checkpoints: CheckpointLoader) -> Self {
        self.checkpoints = Some(checkpoints);
        self
    }

    /// With the directory the run writes to.
    #[doc(hidden)]
    pub fn with_out_dir(mut self, out_dir: Option<std::path::PathBuf>) -> Self {
        self.out_dir = out_dir;
        self
    }

    /// `path` resolved against [`base_dir`](Self::base_dir) when relative.
    pub fn resolve(&self, path: &Path) -> std::path::PathBuf {
        match &self.base_dir {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_path_buf(),
        }
    }
}

impl Default for BuildContext {
    fn default() -> Self {
        Self {
            seed: 0,
            tokenizer: None,
            device: Device::Cpu,
            base_dir: None,
            checkpoints: None,
            out_dir: None,
        }
    }
}

type Factory<T> = Arc<dyn Fn(&ComponentSpec, &BuildContext) -> Result<T> + Send + Sync>;
type Loader = Arc<dyn Fn(&Path, &LoadOptions) -> Result<Box<dyn ModelBackend>> + Send + Sync>;
type Quantizer = Arc<dyn Fn(&Path, WeightDtype, &Path) -> Result<u64> + Send + Sync>;

/// Where a component came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "from", rename_all = "lowercase")]
pub enum Origin {
    /// Linked into this binary, registered by the named plugin.
    BuiltIn(String),
    /// Loaded from a shared library file.
    Library(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::BuiltIn(p) => write!(f, "built-in ({p})"),
            Origin::Library(p) => write!(f, "plugin {p}"),
        }
    }
}

/// Misuse of the registry. These are programming or packaging errors and
/// fail loudly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Two registrations of one `(kind, name)`.
    #[error("{kind} `{name}` is registered twice: first by {first}, again by {second}")]
    Duplicate {
        /// The component kind.
        kind: ComponentKind,
        /// The name registered twice.
        name: String,
        /// Who registered it first.
        first: Origin,
        /// Who tried again.
        second: Origin,
    },
    /// A plugin added twice.
    #[error("plugin `{0}` is added twice")]
    DuplicatePlugin(String),
    /// A plugin needs another that has not been added.
    #[error("plugin `{plugin}` requires plugin `{missing}`, which is not added (add it first)")]
    MissingDependency {
        /// The plugin being added.
        plugin: String,
        /// The plugin it needs.
        missing: String,
    },
    /// A plugin panicked while registering (caught on its side).
    #[error("plugin `{plugin}` panicked while registering: {message}")]
    Panicked {
        /// The plugin.
        plugin: String,
        /// The panic's message.
        message: String,
    },
}

/// A bundle of components, registered in one go (bevy-style).
pub trait Plugin {
    /// Registers this plugin's components.
    fn build(&self, registrar: &mut Registrar<'_>) -> Result<(), RegistryError>;

    /// Unique plugin name (defaults to the type name).
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Names of plugins that must be added before this one.
    fn requires(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Expands `$m!(args.., field, kind)` once per component map of [`Registry`],
/// in display order, so code that touches every map names them once.
macro_rules! each_map {
    ($m:ident!($($arg:tt)*)) => {
        $m!($($arg)*, models, ComponentKind::Model);
        $m!($($arg)*, loaders, ComponentKind::ModelLoader);
        $m!($($arg)*, data, ComponentKind::Data);
        $m!($($arg)*, schedules, ComponentKind::Schedule);
        $m!($($arg)*, synthesizers, ComponentKind::Synthesizer);
        $m!($($arg)*, policies, ComponentKind::Policy);
        $m!($($arg)*, experts, ComponentKind::Expert);
        $m!($($arg)*, trainers, ComponentKind::Trainer);
        $m!($($arg)*, scorers, ComponentKind::Scorer);
        $m!($($arg)*, quantizers, ComponentKind::Quantizer);
    };
}

struct Entry<F> {
    factory: F,
    origin: Origin,
    summary: String,
}

/// The registered components, by kind and name.
#[derive(Default)]
pub struct Registry {
    models: BTreeMap<String, Entry<Factory<Box<dyn ModelBackend>>>>,
    loaders: BTreeMap<String, Entry<Loader>>,
    data: BTreeMap<String, Entry<Factory<Box<dyn DataSource>>>>,
    schedules: BTreeMap<String, Entry<Factory<Arc<dyn NoiseSchedule>>>>,
    synthesizers: BTreeMap<String, Entry<Factory<Arc<dyn ErrorSynthesizer>>>>,
    policies: BTreeMap<String, Entry<Factory<Arc<dyn RefinementPolicy>>>>,
    experts: BTreeMap<String, Entry<Factory<Arc<dyn ExpertCorrector>>>>,
    trainers: BTreeMap<String, Entry<Factory<Arc<dyn Trainer>>>>,
    scorers: BTreeMap<String, Entry<Factory<Arc<dyn CaptionScorer>>>>,
    quantizers: BTreeMap<String, Entry<Quantizer>>,
    plugins: Vec<(String, Origin)>,
}

/// One row of [`Registry::list`].
#[derive(Debug, Clone, Serialize)]
#[doc(hidden)]
pub struct ComponentInfo {
    /// Component kind.
    pub kind: ComponentKind,
    /// Registered name (the `kind = "..."` value in a pipeline).
    pub name: String,
    /// Where it came from.
    pub origin: Origin,
    /// One-line description.
    pub summary: String,
}

/// Registers components on behalf of one plugin.
pub struct Registrar<'r> {
    registry: &'r mut Registry,
    origin: Origin,
}

macro_rules! register_fn {
    ($(#[$doc:meta])* $fn_name:ident, $field:ident, $kind:expr, $ty:ty) => {
        $(#[$doc])*
        pub fn $fn_name<F>(&mut self, name: &str, summary: &str, factory: F) -> Result<(), RegistryError>
        where
            F: Fn(&ComponentSpec, &BuildContext) -> Result<$ty> + Send + Sync + 'static,
        {
            let origin = self.origin.clone();
            let guarded = guard_panics($kind, name, &origin, factory);
            insert(&mut self.registry.$field, $kind, name, summary, origin, Arc::new(guarded))
        }
    };
}

/// Wraps a factory so a panic inside it (plugin code, say) becomes an error
/// for that build, and guards what it builds (see [`crate::guard::Guard`]).
/// Generic, so it is compiled into whichever library registers: for a
/// plugin, the panic is caught by the plugin's own runtime.
fn guard_panics<T: crate::guard::Guard, F>(
    kind: ComponentKind,
    name: &str,
    origin: &Origin,
    factory: F,
) -> impl Fn(&ComponentSpec, &BuildContext) -> Result<T> + Send + Sync + 'static
where
    F: Fn(&ComponentSpec, &BuildContext) -> Result<T> + Send + Sync + 'static,
{
    let (name, origin) = (name.to_string(), origin.clone());
    move |spec: &ComponentSpec, ctx: &BuildContext| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| factory(spec, ctx)))
            .unwrap_or_else(|payload| {
                Err(Error::invalid(format!(
                    "{kind} `{name}` from {origin} panicked while being built: {}",
                    crate::guard::panic_message(payload.as_ref())
                )))
            })
            .map(crate::guard::Guard::guarded)
    }
}

fn insert<F>(
    map: &mut BTreeMap<String, Entry<F>>,
    kind: ComponentKind,
    name: &str,
    summary: &str,
    origin: Origin,
    factory: F,
) -> Result<(), RegistryError> {
    if let Some(existing) = map.get(name) {
        return Err(RegistryError::Duplicate {
            kind,
            name: name.to_string(),
            first: existing.origin.clone(),
            second: origin,
        });
    }
    map.insert(
        name.to_string(),
        Entry {
            factory,
            origin,
            summary: summary.to_string(),
        },
    );
    Ok(())
}

impl Registrar<'_> {
    register_fn!(
        /// Registers a model backend built from pipeline options.
        model, models, ComponentKind::Model, Box<dyn ModelBackend>
    );
    register_fn!(
        /// Registers a data source.
        data_source, data, ComponentKind::Data, Box<dyn DataSource>
    );
    register_fn!(
        /// Registers a noise schedule.
        schedule, schedules, ComponentKind::Schedule, Arc<dyn NoiseSchedule>
    );
    register_fn!(
        /// Registers an error synthesizer.
        synthesizer, synthesizers, ComponentKind::Synthesizer, Arc<dyn ErrorSynthesizer>
    );
    register_fn!(
        /// Registers a refinement policy.
        policy, policies, ComponentKind::Policy, Arc<dyn RefinementPolicy>
    );
    register_fn!(
        /// Registers an expert corrector.
        expert, experts, ComponentKind::Expert, Arc<dyn ExpertCorrector>
    );
    register_fn!(
        /// Registers a Stage II trainer.
        trainer, trainers, ComponentKind::Trainer, Arc<dyn Trainer>
    );
    register_fn!(
        /// Registers a caption scorer (`[eval] scorers`, `rediff score`).
        scorer, scorers, ComponentKind::Scorer, Arc<dyn CaptionScorer>
    );

    /// Registers a checkpoint loader for a `config.json` `model_type`.
    pub fn model_loader<F>(
        &mut self,
        model_type: &str,
        summary: &str,
        loader: F,
    ) -> Result<(), RegistryError>
    where
        F: Fn(&Path, &LoadOptions) -> Result<Box<dyn ModelBackend>> + Send + Sync + 'static,
    {
        let origin = self.origin.clone();
        insert(
            &mut self.registry.loaders,
            ComponentKind::ModelLoader,
            model_type,
            summary,
            origin,
            Arc::new(loader),
        )
    }

    /// Registers what `rediff quantize` runs for a `config.json`
    /// `model_type`: it writes a quantized copy of the checkpoint directory
    /// (`dir`, the dtype, the output file) and returns the bytes of tensor
    /// data written.
    pub fn quantizer<F>(
        &mut self,
        model_type: &str,
        summary: &str,
        quantize: F,
    ) -> Result<(), RegistryError>
    where
        F: Fn(&Path, WeightDtype, &Path) -> Result<u64> + Send + Sync + 'static,
    {
        let origin = self.origin.clone();
        insert(
            &mut self.registry.quantizers,
            ComponentKind::Quantizer,
            model_type,
            summary,
            origin,
            Arc::new(quantize),
        )
    }
}

fn unknown<F>(kind: ComponentKind, spec: &ComponentSpec, map: &BTreeMap<String, F>) -> Error {
    spec.unknown_kind(kind, map.keys().cloned().collect())
        .into()
}

macro_rules! build_fn {
    ($(#[$doc:meta])* $fn_name:ident, $field:ident, $kind:expr, $ty:ty) => {
        $(#[$doc])*
        #[doc(hidden)]
        pub fn $fn_name(&self, spec: &ComponentSpec, ctx: &BuildContext) -> Result<$ty> {
            match self.$field.get(spec.kind()) {
                Some(entry) => (entry.factory)(spec, ctx),
                None => Err(unknown($kind, spec, &self.$field)),
            }
        }
    };
}

impl Registry {
    /// An empty registry.
    #[doc(hidden)]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a plugin with [`Origin::BuiltIn`].
    #[doc(hidden)]
    pub fn add_plugin(&mut self, plugin: &dyn Plugin) -> Result<(), RegistryError> {
        let origin = Origin::BuiltIn(plugin.name().to_string());
        self.add_plugin_from(plugin, origin)
    }

    /// Adds a plugin, recording `origin` on every component it registers.
    ///
    /// Registration is all-or-nothing: on error the registry is unchanged.
    #[doc(hidden)]
    pub fn add_plugin_from(
        &mut self,
        plugin: &dyn Plugin,
        origin: Origin,
    ) -> Result<(), RegistryError> {
        let name = plugin.name().to_string();
        if self.plugins.iter().any(|(n, _)| *n == name) {
            return Err(RegistryError::DuplicatePlugin(name));
        }
        for dep in plugin.requires() {
            if !self.plugins.iter().any(|(n, _)| *n == dep) {
                return Err(RegistryError::MissingDependency {
                    plugin: name,
                    missing: dep,
                });
            }
        }
        // Register into a scratch registry first so a failure leaves `self` untouched.
        let mut scratch = Registry::default();
        plugin.build(&mut Registrar {
            registry: &mut scratch,
            origin: origin.clone(),
        })?;
        self.merge(scratch)?;
        self.plugins.push((name, origin));
        Ok(())
    }

    fn merge(&mut self, other: Registry) -> Result<(), RegistryError> {
        fn check<F>(
            a: &BTreeMap<String, Entry<F>>,
            b: &BTreeMap<String, Entry<F>>,
            kind: ComponentKind,
        ) -> Result<(), RegistryError> {
            for (name, entry) in b {
                if let Some(existing) = a.get(name) {
                    return Err(RegistryError::Duplicate {
                        kind,
                        name: name.clone(),
                        first: existing.origin.clone(),
                        second: entry.origin.clone(),
                    });
                }
            }
            Ok(())
        }
        macro_rules! check_map {
            ($a:ident, $b:ident, $field:ident, $kind:expr) => {
                check(&$a.$field, &$b.$field, $kind)?;
            };
        }
        macro_rules! extend_map {
            ($a:ident, $b:ident, $field:ident, $kind:expr) => {
                $a.$field.extend($b.$field);
            };
        }
        each_map!(check_map!(self, other));
        each_map!(extend_map!(self, other));
        Ok(())
    }

    build_fn!(
        /// Builds the model a pipeline's `[model]` table names.
        build_model, models, ComponentKind::Model, Box<dyn ModelBackend>
    );
    build_fn!(
        /// Builds the data source a `[data]` table names.
        build_data, data, ComponentKind::Data, Box<dyn DataSource>
    );
    build_fn!(
        /// Builds a noise schedule.
        build_schedule, schedules, ComponentKind::Schedule, Arc<dyn NoiseSchedule>
    );
    build_fn!(
        /// Builds an error synthesizer.
        build_synthesizer, synthesizers, ComponentKind::Synthesizer, Arc<dyn ErrorSynthesizer>
    );
    build_fn!(
        /// Builds a refinement policy.
        build_policy, policies, ComponentKind::Policy, Arc<dyn RefinementPolicy>
    );
    build_fn!(
        /// Builds an expert corrector.
        build_expert, experts, ComponentKind::Expert, Arc<dyn ExpertCorrector>
    );
    build_fn!(
        /// Builds a Stage II trainer.
        build_trainer, trainers, ComponentKind::Trainer, Arc<dyn Trainer>
    );
    build_fn!(
        /// Builds a caption scorer.
        build_scorer, scorers, ComponentKind::Scorer, Arc<dyn CaptionScorer>
    );

    /// Loads a checkpoint directory with the loader its `config.json`'s
    /// `model_type` names.
    #[doc(hidden)]
    pub fn load_model(&self, dir: &Path, opts: &LoadOptions) -> Result<Box<dyn ModelBackend>> {
        self.checkpoint_loader().load(dir, opts)
    }

    /// Writes a quantized copy of the checkpoint `dir` into `out` with the
    /// quantizer its `config.json`'s `model_type` names; the bytes of
    /// tensor data written.
    #[doc(hidden)]
    pub fn quantize(&self, dir: &Path, dtype: WeightDtype, out: &Path) -> Result<u64> {
        (for_model_type(&self.quantizers, dir, "quantizer")?.factory)(dir, dtype, out)
    }

    /// A handle on the checkpoint loaders that outlives `self`.
    #[doc(hidden)]
    pub fn checkpoint_loader(&self) -> CheckpointLoader {
        CheckpointLoader(Arc::new(
            self.loaders
                .iter()
                .map(|(k, e)| (k.clone(), e.factory.clone()))
                .collect(),
        ))
    }

    /// Registered names of one kind, sorted.
    #[doc(hidden)]
    pub fn names(&self, kind: ComponentKind) -> Vec<String> {
        self.list()
            .into_iter()
            .filter(|c| c.kind == kind)
            .map(|c| c.name)
            .collect()
    }

    /// Every registered component with its origin.
    #[doc(hidden)]
    pub fn list(&self) -> Vec<ComponentInfo> {
        fn rows<F>(
            out: &mut Vec<ComponentInfo>,
            kind: ComponentKind,
            map: &BTreeMap<String, Entry<F>>,
        ) {
            out.extend(map.iter().map(|(name, e)| ComponentInfo {
                kind,
                name: name.clone(),
                origin: e.origin.clone(),
                summary: e.summary.clone(),
            }));
        }
        let mut out = Vec::new();
        macro_rules! list_map {
            ($a:ident, $out:ident, $field:ident, $kind:expr) => {
                rows(&mut $out, $kind, &$a.$field);
            };
        }
        each_map!(list_map!(self, out));
        out
    }

    /// Plugins added so far, in order.
    #[doc(hidden)]
    pub fn plugins(&self) -> &[(String, Origin)] {
        &self.plugins
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::uniform_unmask_counts;

    struct Const(f32);
    impl NoiseSchedule for Const {
        fn mask_probability(&self, _t: f32) -> f32 {
            self.0
        }
        fn unmask_counts(&self, masked: usize, steps: usize) -> Vec<usize> {
            uniform_unmask_counts(masked, steps)
        }
    }

    struct P(&'static str, &'static str, Vec<String>);
    impl Plugin for P {
        fn name(&self) -> &str {
            self.0
        }
        fn requires(&self) -> Vec<String> {
            self.2.clone()
        }
        fn build(&self, r: &mut Registrar<'_>) -> Result<(), RegistryError> {
            r.schedule(self.1, "constant", |_, _| Ok(Arc::new(Const(0.5))))
        }
    }

    #[test]
    fn duplicate_component_names_fail_loudly_and_change_nothing() {
        let mut reg = Registry::new();
        reg.add_plugin(&P("a", "const", vec![])).unwrap();
        let err = reg.add_plugin(&P("b", "const", vec![])).unwrap_err();
        assert_eq!(
            err,
            RegistryError::Duplicate {
                kind: ComponentKind::Schedule,
                name: "const".into(),
                first: Origin::BuiltIn("a".into()),
                second: Origin::BuiltIn("b".into()),
            }
        );
        assert_eq!(reg.plugins().len(), 1);
        assert_eq!(reg.names(ComponentKind::Schedule), vec!["const"]);
    }

    #[test]
    fn duplicate_plugins_and_missing_dependencies_fail() {
        let mut reg = Registry::new();
        let err = reg
            .add_plugin(&P("needs", "x", vec!["base".into()]))
            .unwrap_err();
        assert_eq!(
            err,
            RegistryError::MissingDependency {
                plugin: "needs".into(),
                missing: "base".into()
            }
        );
        reg.add_plugin(&P("base", "y", vec![])).unwrap();
        reg.add_plugin(&P("needs", "x", vec!["base".into()]))
            .unwrap();
        assert_eq!(
            reg.add_plugin(&P("base", "z", vec![])).unwrap_err(),
            RegistryError::DuplicatePlugin("base".into())
        );
    }

    #[test]
    fn library_origin_is_recorded() {
        let mut reg = Registry::new();
        reg.add_plugin_from(&P("lib", "c", vec![]), Origin::Library("/x/libc.so".into()))
            .unwrap();
        let list = reg.list();
        assert_eq!(list[0].origin.to_string(), "plugin /x/libc.so");
    }

    #[test]
    fn unknown_kind_lists_registered_names() {
        let mut reg = Registry::new();
        reg.add_plugin(&P("a", "linear", vec![])).unwrap();
        let spec = ComponentSpec::from_toml_str("t.toml", "kind = \"lineer\"").unwrap();
        let err = reg
            .build_schedule(&spec, &BuildContext::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("t.toml:1:8"), "{err}");
        assert!(err.contains("unknown schedule `lineer`"), "{err}");
        assert!(err.contains("linear"), "{err}");
    }
}
