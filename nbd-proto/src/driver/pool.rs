//! A server-wide pool of reply buffers, so large READ replies reuse memory that is
//! already mapped instead of faulting in fresh pages for every request. The pool keeps
//! at most a fixed number of bytes; anything beyond is freed.

use std::sync::Mutex;

#[derive(Default)]
struct Free {
    buffers: Vec<Vec<u8>>,
    kept: usize,
    /// Buffers taken since the last [`BufferPool::trim_idle`].
    takes: usize,
}

/// Reusable byte buffers, bounded by the total capacity kept.
pub struct BufferPool {
    free: Mutex<Free>,
    max_kept_bytes: usize,
    max_buffer: usize,
}

impl BufferPool {
    /// A pool keeping at most `max_kept_bytes` in total, and no buffer larger than
    /// `max_buffer`.
    pub fn new(max_kept_bytes: usize, max_buffer: usize) -> Self {
        Self {
            free: Mutex::new(Free::default()),
            max_kept_bytes,
            max_buffer,
        }
    }

    /// A buffer with room for `want` bytes: an earlier reply's when one is free. Its
    /// old contents are left in place (the caller overwrites them; see
    /// `Transmission::execute_into`), so reusing it costs no zeroing.
    pub fn take(&self, want: usize) -> Vec<u8> {
        if let Ok(mut free) = self.free.lock()
            && let Some(i) = free.buffers.iter().rposition(|b| b.capacity() >= want)
        {
            let b = free.buffers.swap_remove(i);
            free.kept -= b.capacity();
            free.takes += 1;
            return b;
        }
        Vec::with_capacity(want)
    }

    /// Gives a buffer back.
    pub fn give(&self, buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap > self.max_buffer || cap == 0 {
            return;
        }
        if let Ok(mut free) = self.free.lock()
            && free.kept + cap <= self.max_kept_bytes
        {
            free.kept += cap;
            free.buffers.push(buf);
        }
    }
}

impl BufferPool {
    /// Frees every kept buffer if none was taken since the previous call; a driver calls
    /// this periodically so an idle server gives its buffers back.
    pub fn trim_idle(&self) {
        if let Ok(mut free) = self.free.lock() {
            if free.takes == 0 {
                free.buffers = Vec::new();
                free.kept = 0;
            }
            free.takes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_and_bounds() {
        let pool = BufferPool::new(10_000, 8_000);
        let mut a = pool.take(4000);
        a.extend_from_slice(&[1; 4000]);
        let ptr = a.as_ptr();
        pool.give(a);
        let b = pool.take(3000);
        assert_eq!(b.as_ptr(), ptr);
        pool.give(Vec::with_capacity(9000)); // too large: dropped
        pool.give(b);
        pool.give(Vec::with_capacity(7000)); // would pass the total: dropped
        assert_eq!(pool.free.lock().unwrap().buffers.len(), 1);
        pool.trim_idle(); // taken since: kept
        assert_eq!(pool.free.lock().unwrap().buffers.len(), 1);
        pool.trim_idle(); // idle: freed
        assert_eq!(pool.free.lock().unwrap().kept, 0);
    }
}
