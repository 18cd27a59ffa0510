//! Thawed K/V buffers onto the state's device.
//!
//! On the CPU each buffer becomes its tensor as it is. On CUDA a copy from ordinary (pageable)
//! host memory goes through the driver's own staging buffers: on an H200 that moved a 537 MB
//! state at 5.5 GB/s (98 ms, two thirds of the thaw). Here each buffer is copied into one of
//! two page-locked (pinned) staging buffers by every core, and from there to the GPU by DMA
//! while the next buffer is staged. Should anything of that fail (page-locked memory is a
//! limited resource), the plain copy is used instead, with a warning.

use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use half::f16;

/// The buffers (K and V of each layer, each of `shape`) as tensors of `dtype` on `device`.
pub(super) fn to_device(
    bufs: Vec<(Vec<f16>, Vec<f16>)>,
    shape: (usize, usize, usize),
    dtype: DType,
    device: &Device,
) -> Result<Vec<(Tensor, Tensor)>> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cuda) = device {
        match pinned::upload(&bufs, shape, cuda) {
            Ok(tensors) => {
                return tensors
                    .into_iter()
                    .map(|(k, v)| Ok((k.to_dtype(dtype)?, v.to_dtype(dtype)?)))
                    .collect()
            }
            Err(e) => tracing::warn!("copying the state through pinned memory failed ({e}); copying it directly"),
        }
    }
    bufs.into_iter()
        .map(|(k, v)| {
            let k = Tensor::from_vec(k, shape, device)?.to_dtype(dtype)?;
            let v = Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?;
            Ok((k, v))
        })
        .collect()
}

#[cfg(feature = "cuda")]
mod pinned {
    use candle_core::cuda::cudarc::driver::DriverError;
    use candle_core::op::BackpropOp;
    use candle_core::{CudaDevice, CudaStorage, Storage, Tensor};
    use half::f16;
    use rayon::prelude::*;

    /// Values each core copies into the staging buffer at a time (1 MiB).
    const PIECE: usize = 1 << 19;

    /// cudarc's pinned memory is write-combining: a core's stores to it wait in that core's
    /// write-combining buffers until something drains them, and neither the worker's "done"
    /// (a plain store) nor the copy to the GPU does. A store fence after each piece makes every
    /// value visible before the DMA reads it. Without it, copying in 128 KiB pieces thawed an
    /// 8B state whose continuation differed from the uninterrupted run (logits by up to 3.9, on
    /// an H200, both times), where 1 MiB pieces were exact six times out of six: plausibly
    /// because glibc's memcpy ends copies that large with non-temporal stores and a fence of
    /// its own. The fence no longer depends on that. (Not yet run on a GPU with the fence.)
    fn drain_write_combining() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `sfence` has no operands and no effect but ordering this core's stores.
        unsafe {
            std::arch::x86_64::_mm_sfence()
        };
    }

    fn err(e: DriverError) -> candle_core::Error {
        candle_core::Error::Msg(format!("CUDA: {e}"))
    }

    pub(super) fn upload(
        bufs: &[(Vec<f16>, Vec<f16>)],
        shape: (usize, usize, usize),
        dev: &CudaDevice,
    ) -> candle_core::Result<Vec<(Tensor, Tensor)>> {
        let n = shape.0 * shape.1 * shape.2;
        if bufs.iter().any(|(k, v)| k.len() != n || v.len() != n) {
            candle_core::bail!("a K/V buffer does not have {n} values");
        }
        let stream = dev.cuda_stream();
        let ctx = stream.context();
        // SAFETY: page-locked host memory of `n` f16 values each, fully written below before
        // any copy reads it (every buffer has exactly `n` values).
        let mut staging = unsafe {
            [
                ctx.alloc_pinned::<f16>(n).map_err(err)?,
                ctx.alloc_pinned::<f16>(n).map_err(err)?,
            ]
        };
        let mut turn = 0;
        let mut one = |host: &[f16]| -> candle_core::Result<Tensor> {
            let pinned = &mut staging[turn % 2];
            turn += 1;
            // Waits until this buffer's previous copy to the GPU has finished.
            let dst = pinned.as_mut_slice().map_err(err)?;
            dst.par_chunks_mut(PIECE)
                .zip(host.par_chunks(PIECE))
                .for_each(|(d, s)| {
                    d.copy_from_slice(s);
                    drain_write_combining();
                });
            // SAFETY: the device buffer is written whole by the copy below before any use.
            let mut out = unsafe { stream.alloc::<f16>(n) }.map_err(err)?;
            stream.memcpy_htod(&*pinned, &mut out).map_err(err)?;
            let storage = CudaStorage::wrap_cuda_slice(out, dev.clone());
            Ok(Tensor::from_storage(
                Storage::Cuda(storage),
                shape,
                BackpropOp::none(),
                false,
            ))
        };
        let mut tensors = Vec::with_capacity(bufs.len());
        for (k, v) in bufs {
            let k = one(k)?;
            let v = one(v)?;
            tensors.push((k, v));
        }
        // The staging buffers are freed on return: the copies from them must be done.
        stream.synchronize().map_err(err)?;
        Ok(tensors)
    }
}
