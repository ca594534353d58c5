//! Weights and optimizer state as bytes: weights as safetensors through burn-store (tensor names
//! are module paths, `encoder.levels.0.blocks.0.conv1.weight`, readable by any safetensors
//! tool), optimizer state through burn's named MessagePack recorder (keyed by parameter id,
//! which [`crate::models::init`] derives from the same paths).

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn_store::{ModuleSnapshot, SafetensorsStore};

use super::TrainError;

/// `model`'s weights as a safetensors file.
pub fn to_safetensors<B: Backend, M: Module<B>>(model: &M) -> Result<Vec<u8>, TrainError> {
    let mut store = SafetensorsStore::from_bytes(None);
    model
        .save_into(&mut store)
        .map_err(|e| TrainError::Checkpoint(format!("encoding weights: {e}")))?;
    store
        .get_bytes()
        .map_err(|e| TrainError::Checkpoint(format!("encoding weights: {e}")))
}

/// `model` with every weight read from a safetensors file (`what` names it in errors); every
/// parameter must be there with its shape.
pub fn from_safetensors<B: Backend, M: Module<B>>(
    mut model: M,
    bytes: &[u8],
    what: &str,
) -> Result<M, TrainError> {
    let mut store = SafetensorsStore::from_bytes(Some(bytes.to_vec()));
    let applied = model
        .load_from(&mut store)
        .map_err(|e| TrainError::Checkpoint(format!("{what}: {e}")))?;
    if !applied.errors.is_empty() || !applied.missing.is_empty() {
        let mut why: Vec<String> = applied.errors.iter().map(|e| e.to_string()).collect();
        why.extend(applied.missing.iter().map(|(p, _)| format!("{p} missing")));
        return Err(TrainError::Checkpoint(format!(
            "{what}: does not fit this model ({}{})",
            why.iter().take(5).cloned().collect::<Vec<_>>().join("; "),
            if why.len() > 5 { "; ..." } else { "" }
        )));
    }
    Ok(model)
}

/// The optimizer's state (moments, step counts) as bytes.
pub fn optimizer_to_bytes<B, M, O>(optim: &O) -> Result<Vec<u8>, TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    NamedMpkBytesRecorder::<FullPrecisionSettings>::default()
        .record(optim.to_record(), ())
        .map_err(|e| TrainError::Checkpoint(format!("encoding the optimizer state: {e}")))
}

/// `optim` with the state read from `bytes`.
pub fn optimizer_from_bytes<B, M, O>(
    optim: O,
    bytes: &[u8],
    device: &B::Device,
    what: &str,
) -> Result<O, TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let record = NamedMpkBytesRecorder::<FullPrecisionSettings>::default()
        .load(bytes.to_vec(), device)
        .map_err(|e| TrainError::Checkpoint(format!("{what}: {e}")))?;
    Ok(optim.load_record(record))
}
