//! The wgpu runtime under the GPU backend: buffers and their pool, the pipeline cache, and
//! the command encoder that collects a whole step's dispatches.
//!
//! - **Buffers** are f32 or u32 arrays in storage buffers. A dropped buffer goes back to a
//!   pool, by size class, and is reused for the next buffer of that class.
//! - **Dispatches** are recorded into one command encoder, one compute pass each (wgpu puts
//!   the barriers between passes). Nothing is submitted until a value is read back, the
//!   encoder holds `MAX_PENDING_DISPATCHES`, or the params arena is full; so a training step
//!   runs as a few submissions with a single readback (the loss).
//! - **Params**: every dispatch's small uniform struct is appended to a host-side arena that is
//!   written to one uniform buffer just before the submit; each bind group points at its slot.
//!
//! Ordering. `Queue::write_buffer` takes effect at the start of the next submit, before that
//! submit's commands. So an upload must not land in a buffer that a recorded but not yet
//! submitted dispatch still reads: the pool keeps buffers freed since the last submit in
//! quarantine, and uploads only take buffers freed before it. Kernel outputs may take either,
//! since dispatches run in recording order.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};

use super::kernel::{Access, Kernel};

/// Bytes per params slot: the largest `min_uniform_buffer_offset_alignment` wgpu allows, so
/// every slot offset is valid on every adapter; kernels' params structs fit in it.
const PARAMS_SLOT: u64 = 256;
/// Params slots per submission.
const PARAMS_SLOTS: u64 = 2048;
/// Dispatches recorded before the encoder is submitted, so the GPU starts early on long steps.
const MAX_PENDING_DISPATCHES: usize = 512;
/// Pooled bytes kept at most; beyond this a freed buffer is destroyed.
const POOL_LIMIT_BYTES: u64 = 4 << 30;

/// A storage buffer of `len` 4-byte elements, returned to the pool when dropped.
pub struct GpuBuffer {
    buffer: wgpu::Buffer,
    len: usize,
    pool: Arc<Mutex<Pool>>,
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({} elements)", self.len)
    }
}

impl GpuBuffer {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn raw(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.release(self.buffer.clone());
        }
    }
}

/// Freed buffers by size (bytes). See the module comment for the quarantine.
#[derive(Default)]
struct Pool {
    ready: HashMap<u64, Vec<wgpu::Buffer>>,
    quarantine: Vec<wgpu::Buffer>,
    pooled_bytes: u64,
}

impl Pool {
    fn release(&mut self, buffer: wgpu::Buffer) {
        if self.pooled_bytes + buffer.size() > POOL_LIMIT_BYTES {
            buffer.destroy();
            return;
        }
        self.pooled_bytes += buffer.size();
        self.quarantine.push(buffer);
    }

    /// A pooled buffer of exactly `bytes`; from quarantine too when `recorded_use` (the
    /// caller writes it only through recorded commands).
    fn take(&mut self, bytes: u64, recorded_use: bool) -> Option<wgpu::Buffer> {
        let found = match self.ready.get_mut(&bytes).and_then(Vec::pop) {
            Some(b) => Some(b),
            None if recorded_use => self
                .quarantine
                .iter()
                .position(|b| b.size() == bytes)
                .map(|i| self.quarantine.swap_remove(i)),
            None => None,
        };
        if let Some(b) = &found {
            self.pooled_bytes -= b.size();
        }
        found
    }

    /// After a submit, nothing unsubmitted reads the quarantined buffers any more.
    fn end_quarantine(&mut self) {
        for b in self.quarantine.drain(..) {
            self.ready.entry(b.size()).or_default().push(b);
        }
    }
}

/// Buffer sizes are rounded up to a size class (quarter-octave steps above 1 KiB) so that
/// buffers of nearly equal size share a pool entry; at most ~19% is wasted.
fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    if bytes <= 1024 {
        return bytes.next_power_of_two();
    }
    let step = (bytes.next_power_of_two() / 8).max(256);
    bytes.div_ceil(step) * step
}

struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    /// The params of the recorded dispatches, slot after slot.
    params: Vec<u8>,
    dispatches: usize,
}

pub struct Runtime {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pipelines: Mutex<HashMap<(&'static str, &'static str), Arc<Pipeline>>>,
    pending: Mutex<Pending>,
    params_arena: wgpu::Buffer,
    pool: Arc<Mutex<Pool>>,
}

impl Runtime {
    /// Opens the adapter wgpu prefers (high performance first); `WGPU_BACKEND` narrows the
    /// backends (e.g. `vulkan`), `WGPU_ADAPTER_NAME` picks by name.
    pub fn open() -> Result<Runtime, String> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
            Ok(wanted) => {
                let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
                let adapters = pollster::block_on(instance.enumerate_adapters(backends));
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                adapters
                    .into_iter()
                    .find(|a| {
                        a.get_info()
                            .name
                            .to_lowercase()
                            .contains(&wanted.to_lowercase())
                    })
                    .ok_or_else(|| {
                        format!("WGPU_ADAPTER_NAME={wanted:?} matches no adapter (found {names:?})")
                    })?
            }
            Err(_) => pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            }))
            .map_err(|e| format!("no GPU adapter found ({e})"))?,
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("seqrec"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        }))
        .map_err(|e| format!("GPU adapter {} could not open a device ({e})", info.name))?;
        let params_arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params arena"),
            size: PARAMS_SLOT * PARAMS_SLOTS,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Runtime {
            device,
            queue,
            info,
            limits,
            pipelines: Mutex::new(HashMap::new()),
            pending: Mutex::new(Pending {
                encoder: None,
                params: Vec::new(),
                dispatches: 0,
            }),
            params_arena,
            pool: Arc::new(Mutex::new(Pool::default())),
        })
    }

    /// The largest storage buffer a kernel may bind, in 4-byte elements.
    pub fn max_binding_elements(&self) -> usize {
        (self.limits.max_storage_buffer_binding_size / 4) as usize
    }

    fn buffer(&self, len: usize, recorded_use: bool) -> GpuBuffer {
        let bytes = size_class(len as u64 * 4);
        let limit = self
            .limits
            .max_buffer_size
            .min(self.limits.max_storage_buffer_binding_size);
        // A tensor the adapter cannot hold is a configuration problem (batch × length ×
        // catalogue too large for this GPU), so say which numbers to change.
        assert!(
            len as u64 * 4 <= limit,
            "a {} MiB tensor exceeds this GPU's buffer limit of {} MiB ({}); lower \
             train.batch_size or data.max_len, or use --device cpu",
            (len as u64 * 4) >> 20,
            limit >> 20,
            self.info.name
        );
        let bytes = bytes.min(limit & !3);
        let pooled = self.pool.lock().expect("pool").take(bytes, recorded_use);
        let buffer = pooled.unwrap_or_else(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        GpuBuffer {
            buffer,
            len,
            pool: self.pool.clone(),
        }
    }

    /// A buffer for a kernel to write in full; its contents are undefined until then.
    pub fn alloc(&self, len: usize) -> GpuBuffer {
        self.buffer(len, true)
    }

    /// A buffer of zeros (cleared by a recorded command, in order with the dispatches).
    pub fn zeros(&self, len: usize) -> GpuBuffer {
        let out = self.alloc(len);
        let mut pending = self.pending.lock().expect("pending");
        let encoder = self.encoder(&mut pending);
        encoder.clear_buffer(&out.buffer, 0, None);
        drop(pending);
        out
    }

    /// A buffer holding `values` (f32 or u32).
    pub fn upload<T: bytemuck::Pod>(&self, values: &[T]) -> GpuBuffer {
        assert_eq!(
            std::mem::size_of::<T>(),
            4,
            "GPU buffers hold 4-byte elements"
        );
        let out = self.buffer(values.len(), false);
        if !values.is_empty() {
            self.queue
                .write_buffer(&out.buffer, 0, bytemuck::cast_slice(values));
        }
        out
    }

    /// Copies `len` elements of `src` into a new buffer (recorded, so in order).
    pub fn copy(&self, src: &GpuBuffer) -> GpuBuffer {
        let out = self.alloc(src.len);
        if src.len > 0 {
            let mut pending = self.pending.lock().expect("pending");
            let encoder = self.encoder(&mut pending);
            encoder.copy_buffer_to_buffer(&src.buffer, 0, &out.buffer, 0, src.len as u64 * 4);
        }
        out
    }

    /// The values of a buffer: submits everything recorded and waits for it.
    pub fn read<T: bytemuck::Pod>(&self, src: &GpuBuffer) -> Vec<T> {
        assert_eq!(
            std::mem::size_of::<T>(),
            4,
            "GPU buffers hold 4-byte elements"
        );
        if src.len == 0 {
            return Vec::new();
        }
        let bytes = src.len as u64 * 4;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut pending = self.pending.lock().expect("pending");
            let encoder = self.encoder(&mut pending);
            encoder.copy_buffer_to_buffer(&src.buffer, 0, &staging, 0, bytes);
            self.submit(&mut pending);
        }
        let slice = staging.slice(..);
        let (sender, receiver) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |result| {
            let _ = sender.send(result);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .expect("GPU device lost while waiting for a readback");
        receiver
            .recv()
            .expect("map callback")
            .expect("GPU readback mapping failed");
        let values = {
            let view = slice.get_mapped_range().expect("mapped range");
            bytemuck::cast_slice::<u8, T>(&view).to_vec()
        };
        staging.unmap();
        values
    }

    /// Submits everything recorded so far and waits until the GPU has run it.
    pub fn wait(&self) {
        self.flush();
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .expect("GPU device lost");
    }

    /// Submits everything recorded so far without waiting.
    pub fn flush(&self) {
        let mut pending = self.pending.lock().expect("pending");
        self.submit(&mut pending);
    }

    fn encoder<'a>(&self, pending: &'a mut Pending) -> &'a mut wgpu::CommandEncoder {
        pending.encoder.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        })
    }

    fn submit(&self, pending: &mut Pending) {
        let Some(encoder) = pending.encoder.take() else {
            return;
        };
        if !pending.params.is_empty() {
            self.queue
                .write_buffer(&self.params_arena, 0, &pending.params);
        }
        self.queue.submit([encoder.finish()]);
        pending.params.clear();
        pending.dispatches = 0;
        self.pool.lock().expect("pool").end_quarantine();
    }

    fn pipeline(&self, kernel: &Kernel) -> Arc<Pipeline> {
        let mut cache = self.pipelines.lock().expect("pipelines");
        if let Some(p) = cache.get(&kernel.key()) {
            return p.clone();
        }
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.file),
                source: wgpu::ShaderSource::Wgsl(kernel.source.into()),
            });
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }];
        for (i, access) in kernel.storage.iter().enumerate() {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: i as u32 + 1,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: *access == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(kernel.entry),
                entries: &entries,
            });
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(kernel.entry),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(kernel.entry),
                compilation_options: Default::default(),
                cache: None,
            });
        let p = Arc::new(Pipeline { pipeline, layout });
        cache.insert(kernel.key(), p.clone());
        p
    }

    /// Records one dispatch of `kernel` with `params` (the uniform struct's fields as 4-byte
    /// words, f32 via `to_bits`) and `buffers` bound at 1.. in order, over `groups` workgroups.
    pub fn dispatch(
        &self,
        kernel: &Kernel,
        params: &[u32],
        buffers: &[&GpuBuffer],
        groups: [u32; 3],
    ) {
        assert_eq!(
            buffers.len(),
            kernel.storage.len(),
            "{}::{}: wrong number of buffers",
            kernel.file,
            kernel.entry
        );
        assert!(params.len() * 4 <= PARAMS_SLOT as usize, "params too large");
        if groups.contains(&0) {
            return;
        }
        let max = self.limits.max_compute_workgroups_per_dimension;
        assert!(
            groups.iter().all(|&g| g <= max),
            "{}::{}: {groups:?} workgroups exceed the limit {max}",
            kernel.file,
            kernel.entry
        );
        let pipeline = self.pipeline(kernel);
        let mut pending = self.pending.lock().expect("pending");
        if pending.params.len() as u64 >= PARAMS_SLOT * PARAMS_SLOTS
            || pending.dispatches >= MAX_PENDING_DISPATCHES
        {
            self.submit(&mut pending);
        }
        let offset = pending.params.len() as u64;
        let mut slot = [0u8; PARAMS_SLOT as usize];
        slot[..params.len() * 4].copy_from_slice(bytemuck::cast_slice(params));
        pending.params.extend_from_slice(&slot);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.params_arena,
                offset,
                size: NonZeroU64::new(PARAMS_SLOT),
            }),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.buffer.as_entire_binding(),
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.layout,
            entries: &entries,
        });
        pending.dispatches += 1;
        let encoder = self.encoder(&mut pending);
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
    }
}

/// Workgroups for `n` items at `per_group` items each, spread over x and y so that neither
/// exceeds 65 535. Kernels recover the flat group index as `wid.x + wid.y * nwg.x`.
pub fn grid(n: usize, per_group: u32) -> [u32; 3] {
    let groups = n.div_ceil(per_group as usize) as u64;
    if groups <= 65_535 {
        return [groups as u32, 1, 1];
    }
    let y = groups.div_ceil(65_535);
    [groups.div_ceil(y) as u32, y as u32, 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_cover_and_waste_little() {
        for bytes in [
            1u64,
            4,
            255,
            256,
            257,
            1000,
            1025,
            4096,
            5000,
            1 << 20,
            (1 << 20) + 1,
        ] {
            let c = size_class(bytes);
            assert!(c >= bytes && c >= 256, "{bytes} -> {c}");
            assert!(
                bytes <= 1024 || (c as f64) < 1.26 * bytes as f64,
                "{bytes} -> {c}"
            );
        }
    }

    #[test]
    fn grid_covers_every_item_within_limits() {
        for n in [
            1usize,
            255,
            256,
            257,
            65_535 * 256,
            65_535 * 256 + 1,
            40_000_000,
        ] {
            let g = grid(n, 256);
            assert!(g[0] <= 65_535 && g[1] <= 65_535);
            assert!((g[0] as usize) * (g[1] as usize) * 256 >= n, "{n}: {g:?}");
        }
    }
}
