//! One process alone: every collective is the identity.

use super::{Collective, DistError, World};

/// The collective of a world of one.
#[derive(Debug, Clone)]
pub struct Local {
    world: World,
}

impl Local {
    pub fn new(world: World) -> Local {
        Local { world }
    }
}

impl Default for Local {
    fn default() -> Self {
        Local::new(World::single())
    }
}

impl Collective for Local {
    fn name(&self) -> &'static str {
        "local"
    }
    fn world(&self) -> &World {
        &self.world
    }
    fn all_reduce_sum(&mut self, _buf: &mut [f32]) -> Result<(), DistError> {
        Ok(())
    }
    fn broadcast(&mut self, _buf: &mut [f32], _root: usize) -> Result<(), DistError> {
        Ok(())
    }
    fn min_max(&mut self, value: u64) -> Result<(u64, u64), DistError> {
        Ok((value, value))
    }
    fn barrier(&mut self) -> Result<(), DistError> {
        Ok(())
    }
}
