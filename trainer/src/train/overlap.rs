//! Gradients all-reduced while the backward pass goes on. The backward pass hands over each part
//! of the model's gradients as soon as it is final (the DiT's output layer, each block from the
//! last to the first, then the embeddings: `recompute::backward_pieces`); here each part is
//! flattened on the device and packed into buckets of at least [`STREAM_BUCKET_FLOATS`] values,
//! and a communication thread, lent the job's [`Collective`], reads each bucket back and
//! all-reduces it (in pieces of at most [`BUCKET_FLOATS`]) while the backward pass computes the
//! parts below. What is left to wait for
//! after the backward pass is the last bucket's all-reduce (and any the link could not keep up
//! with): the "exposed" communication time.
//!
//! Every rank hands over the same parts in the same order, so the buckets match across ranks.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

use super::data_parallel::BUCKET_FLOATS;
use super::TrainError;
use crate::dist::Collective;

/// Values a bucket collects before it goes to the communication thread (16 MB of f32): large
/// enough for the link's bandwidth, small enough that the first all-reduce starts early in the
/// backward pass.
pub const STREAM_BUCKET_FLOATS: usize = 4 << 20;

/// Hands one part of the gradients (final for this step) to the all-reduce.
pub type Ready<'a> = dyn FnMut(GradientsParams) -> Result<(), TrainError> + 'a;

/// What [`all_reduce_during`] ends with.
pub struct Overlapped<R> {
    /// What the backward pass returned.
    pub value: R,
    /// The mean over ranks of the gradients (earlier micro-batches' included), times `scale`.
    pub grads: GradientsParams,
    /// Seconds in the backward pass (this thread).
    pub backward_s: f64,
    /// Seconds after the backward pass until the reduced gradients are back in place: the part
    /// of the all-reduce not hidden.
    pub exposed_s: f64,
    /// Buckets all-reduced, and how many of them before the backward pass ended.
    pub buckets: usize,
    pub during_backward: usize,
}

/// Runs `backward` (which hands each final part of the gradients to the function it is given)
/// while a communication thread all-reduces the parts through `coll`; `earlier` (gradients of
/// the step's earlier micro-batches) is added to each part before it goes. Returns the mean
/// over ranks times `scale` (1/micro-batches), for `model`'s parameters.
pub fn all_reduce_during<B, M, R>(
    model: &M,
    coll: &mut dyn Collective,
    earlier: GradientsParams,
    scale: f32,
    device: &B::Device,
    backward: impl FnOnce(&mut Ready<'_>) -> Result<R, TrainError>,
) -> Result<Overlapped<R>, TrainError>
where
    B: AutodiffBackend,
    M: Module<B>,
{
    overlap_with::<B, M, R>(
        model,
        coll,
        earlier,
        scale,
        device,
        STREAM_BUCKET_FLOATS,
        backward,
    )
}

/// [`all_reduce_during`] with buckets of at least `bucket_floats` values.
fn overlap_with<B, M, R>(
    model: &M,
    coll: &mut dyn Collective,
    earlier: GradientsParams,
    scale: f32,
    device: &B::Device,
    bucket_floats: usize,
    backward: impl FnOnce(&mut Ready<'_>) -> Result<R, TrainError>,
) -> Result<Overlapped<R>, TrainError>
where
    B: AutodiffBackend,
    M: Module<B>,
{
    let (to_comm, from_main) = mpsc::channel::<Tensor<B::InnerBackend, 1>>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let comm = scope.spawn(move || reduce_buckets::<B::InnerBackend>(coll, from_main, done_tx));
        let mut pack = Pack::<B> {
            earlier,
            parts: Vec::new(),
            floats: 0,
            layout: Vec::new(),
            to_comm,
            sent: 0,
            bucket_floats,
        };
        let started = Instant::now();
        let value = backward(&mut |piece| pack.add(model, piece));
        // Whatever only earlier micro-batches reached goes last.
        let value = value.and_then(|v| {
            let rest = std::mem::take(&mut pack.earlier);
            pack.add(model, rest)?;
            pack.flush(0)?;
            Ok(v)
        });
        let backward_s = started.elapsed().as_secs_f64();
        let during_backward = done_rx.try_iter().count();
        let Pack {
            layout,
            to_comm,
            sent,
            ..
        } = pack;
        drop(to_comm);
        let waited = Instant::now();
        let reduced = comm
            .join()
            .map_err(|_| TrainError::Other("the all-reduce thread panicked".into()))?;
        // A failed all-reduce is the cause when both failed (the backward pass then finds the
        // thread gone).
        let reduced = reduced?;
        let value = value?;
        let grads = unpack::<B, M>(model, &reduced, &layout, scale, device)?;
        let exposed_s = waited.elapsed().as_secs_f64();
        Ok(Overlapped {
            value,
            grads,
            backward_s,
            exposed_s,
            buckets: sent,
            during_backward: during_backward.min(sent),
        })
    })
}

/// The communication thread: each bucket read back to the host and all-reduced (mean) in pieces
/// of at most [`BUCKET_FLOATS`] values, in the order sent, until the sender is dropped; one
/// `done` per bucket.
fn reduce_buckets<B: Backend>(
    coll: &mut dyn Collective,
    buckets: mpsc::Receiver<Tensor<B, 1>>,
    done: mpsc::Sender<()>,
) -> Result<Vec<Vec<f32>>, TrainError> {
    let mut out = Vec::new();
    for bucket in buckets {
        let mut host = bucket
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| TrainError::Other(format!("reading gradients back: {e:?}")))?;
        for piece in host.chunks_mut(BUCKET_FLOATS) {
            coll.all_reduce_mean(piece)
                .map_err(|e| TrainError::Other(format!("data parallel: {e}")))?;
        }
        out.push(host);
        // The main thread may have stopped counting; nothing to tell it then.
        let _ = done.send(());
    }
    Ok(out)
}

/// The main thread's side: parts flattened into the current bucket, and where each parameter's
/// values are in the stream of buckets.
struct Pack<B: AutodiffBackend> {
    earlier: GradientsParams,
    parts: Vec<Tensor<B::InnerBackend, 1>>,
    floats: usize,
    layout: Vec<(ParamId, usize)>,
    to_comm: mpsc::Sender<Tensor<B::InnerBackend, 1>>,
    sent: usize,
    bucket_floats: usize,
}

impl<B: AutodiffBackend> Pack<B> {
    fn add<M: Module<B>>(
        &mut self,
        model: &M,
        mut piece: GradientsParams,
    ) -> Result<(), TrainError> {
        let mut take = Take::<B> {
            piece: &mut piece,
            earlier: &mut self.earlier,
            parts: &mut self.parts,
            floats: &mut self.floats,
            layout: &mut self.layout,
        };
        model.visit(&mut take);
        self.flush(self.bucket_floats)
    }

    /// Sends the bucket once it holds at least `min` values (anything, with 0).
    fn flush(&mut self, min: usize) -> Result<(), TrainError> {
        if self.floats == 0 || self.floats < min {
            return Ok(());
        }
        let bucket = Tensor::cat(std::mem::take(&mut self.parts), 0);
        self.floats = 0;
        self.to_comm
            .send(bucket)
            .map_err(|_| TrainError::Other("the all-reduce thread stopped".into()))?;
        self.sent += 1;
        Ok(())
    }
}

/// Takes the gradients of a part out of it, in the model's parameter order, adds the earlier
/// micro-batches' and flattens them into the bucket.
struct Take<'a, B: AutodiffBackend> {
    piece: &'a mut GradientsParams,
    earlier: &'a mut GradientsParams,
    parts: &'a mut Vec<Tensor<B::InnerBackend, 1>>,
    floats: &'a mut usize,
    layout: &'a mut Vec<(ParamId, usize)>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Take<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(g) = self.piece.remove::<B::InnerBackend, D>(param.id) else {
            return;
        };
        let g = match self.earlier.remove::<B::InnerBackend, D>(param.id) {
            Some(e) => g + e,
            None => g,
        };
        let n: usize = g.dims().iter().product();
        self.layout.push((param.id, n));
        self.parts.push(g.reshape([n]));
        *self.floats += n;
    }
}

/// The reduced values back as gradients, each parameter's from where [`Take`] put it: the
/// buckets hold the parameters of `layout` in order.
fn unpack<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    reduced: &[Vec<f32>],
    layout: &[(ParamId, usize)],
    scale: f32,
    device: &B::Device,
) -> Result<GradientsParams, TrainError> {
    let mut at = HashMap::with_capacity(layout.len());
    let mut params = layout.iter();
    for (b, bucket) in reduced.iter().enumerate() {
        let mut offset = 0usize;
        while offset < bucket.len() {
            let Some(&(id, n)) = params.next() else { break };
            at.insert(id, (b, offset..offset + n));
            offset += n;
        }
        if offset != bucket.len() {
            return Err(TrainError::Other(format!(
                "the all-reduce returned {} values in bucket {b}, its gradients hold {offset}",
                bucket.len()
            )));
        }
    }
    if at.len() != layout.len() {
        return Err(TrainError::Other(format!(
            "the all-reduce returned {} buckets, holding {} of {} gradients",
            reduced.len(),
            at.len(),
            layout.len()
        )));
    }
    let mut put = Put::<B> {
        grads: GradientsParams::new(),
        reduced,
        at,
        scale,
        device: device.clone(),
    };
    model.visit(&mut put);
    Ok(put.grads)
}

struct Put<'a, B: AutodiffBackend> {
    grads: GradientsParams,
    reduced: &'a [Vec<f32>],
    at: HashMap<ParamId, (usize, std::ops::Range<usize>)>,
    scale: f32,
    device: B::Device,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Put<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some((bucket, range)) = self.at.remove(&param.id) else {
            return;
        };
        let values: Vec<f32> = self.reduced[bucket][range]
            .iter()
            .map(|v| v * self.scale)
            .collect();
        let t = Tensor::<B::InnerBackend, D>::from_data(
            TensorData::new(values, param.shape()),
            &self.device,
        );
        self.grads.register::<B::InnerBackend, D>(param.id, t);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use burn::nn::{Linear, LinearConfig};

    use super::*;
    use crate::dist::{DistError, Launcher, World};
    use crate::train::backend::CpuAutodiff;

    type AB = CpuAutodiff;
    type Inner = <AB as AutodiffBackend>::InnerBackend;

    /// Two ranks holding the same gradients (the sum doubles them), counting the buckets it
    /// reduced and noting the threads it ran on.
    struct Twin {
        world: World,
        reduced: Arc<AtomicUsize>,
        threads: Arc<Mutex<Vec<std::thread::ThreadId>>>,
    }

    impl Collective for Twin {
        fn name(&self) -> &'static str {
            "twin"
        }
        fn world(&self) -> &World {
            &self.world
        }
        fn all_reduce_sum(&mut self, buf: &mut [f32]) -> Result<(), DistError> {
            buf.iter_mut().for_each(|v| *v *= 2.0);
            self.threads
                .lock()
                .unwrap()
                .push(std::thread::current().id());
            self.reduced.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn broadcast(&mut self, _: &mut [f32], _: usize) -> Result<(), DistError> {
            Ok(())
        }
        fn min_max(&mut self, v: u64) -> Result<(u64, u64), DistError> {
            Ok((v, v))
        }
        fn barrier(&mut self) -> Result<(), DistError> {
            Ok(())
        }
    }

    fn grads_of(
        layer: &Linear<AB>,
        value: f32,
        device: &burn::tensor::Device<AB>,
    ) -> GradientsParams {
        let mut g = GradientsParams::new();
        let w = layer.weight.val().inner().ones_like() * value;
        g.register::<Inner, 2>(layer.weight.id, w);
        if let Some(b) = &layer.bias {
            g.register::<Inner, 1>(b.id, Tensor::<Inner, 1>::ones(b.shape(), device) * value);
        }
        g
    }

    fn values(g: &GradientsParams, id: ParamId) -> Vec<f32> {
        g.get::<Inner, 2>(id)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn each_part_is_all_reduced_while_the_backward_pass_goes_on() {
        let device = Default::default();
        let layers: Vec<Linear<AB>> = (0..3)
            .map(|_| LinearConfig::new(8, 4).init(&device))
            .collect();
        let reduced = Arc::new(AtomicUsize::new(0));
        let threads = Arc::new(Mutex::new(Vec::new()));
        let mut coll = Twin {
            world: World {
                rank: 0,
                size: 2,
                local_rank: 0,
                master: None,
                launcher: Launcher::OpenMpi,
            },
            reduced: reduced.clone(),
            threads: threads.clone(),
        };
        // An earlier micro-batch reached layers 0 and 1.
        let mut earlier = grads_of(&layers[0], 10.0, &device);
        earlier.register::<Inner, 2>(
            layers[1].weight.id,
            layers[1].weight.val().inner().ones_like() * 20.0,
        );
        let wait_for = |n: usize| {
            let until = Instant::now() + Duration::from_secs(20);
            while reduced.load(Ordering::SeqCst) < n {
                assert!(
                    Instant::now() < until,
                    "bucket {n} was not all-reduced while the backward pass waited"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        // The backward pass hands over the last layer, then the middle one; each time it waits
        // until the communication thread has reduced what it handed over. Layer 0 it never
        // reaches: its earlier gradients go at the end.
        let o = overlap_with::<AB, _, _>(&layers, &mut coll, earlier, 0.5, &device, 1, |ready| {
            ready(grads_of(&layers[2], 3.0, &device))?;
            wait_for(1);
            ready(grads_of(&layers[1], 4.0, &device))?;
            wait_for(2);
            Ok("done")
        })
        .unwrap();
        assert_eq!(o.value, "done");
        assert_eq!(o.buckets, 3);
        assert!(o.during_backward >= 2, "{}", o.during_backward);
        let threads = threads.lock().unwrap();
        assert_eq!(threads.len(), 3);
        assert!(threads.iter().all(|t| *t != std::thread::current().id()));
        // Mean over the two (equal) ranks times the scale 0.5, earlier gradients added.
        assert!(values(&o.grads, layers[2].weight.id)
            .iter()
            .all(|v| *v == 1.5));
        assert!(values(&o.grads, layers[1].weight.id)
            .iter()
            .all(|v| *v == 12.0));
        assert!(values(&o.grads, layers[0].weight.id)
            .iter()
            .all(|v| *v == 5.0));
        let bias = |l: &Linear<AB>| {
            let b = l.bias.as_ref().unwrap();
            o.grads
                .get::<Inner, 1>(b.id)
                .map(|t| t.into_data().to_vec::<f32>().unwrap())
        };
        assert_eq!(bias(&layers[2]), Some(vec![1.5; 4]));
        // Layer 1's bias had a gradient in this micro-batch only.
        assert_eq!(bias(&layers[1]), Some(vec![2.0; 4]));
        assert_eq!(bias(&layers[0]), Some(vec![5.0; 4]));
    }

    #[test]
    fn a_failed_backward_pass_is_reported_and_the_thread_ends() {
        let device = Default::default();
        let layers: Vec<Linear<AB>> = (0..2)
            .map(|_| LinearConfig::new(4, 4).init(&device))
            .collect();
        let mut coll = Twin {
            world: World::single(),
            reduced: Arc::new(AtomicUsize::new(0)),
            threads: Arc::new(Mutex::new(Vec::new())),
        };
        let r = overlap_with::<AB, _, ()>(
            &layers,
            &mut coll,
            GradientsParams::new(),
            1.0,
            &device,
            1,
            |ready| {
                ready(grads_of(&layers[1], 1.0, &device))?;
                Err(TrainError::Other("out of memory in block 0".into()))
            },
        );
        let e = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("block 0"), "{e}");
    }
}
