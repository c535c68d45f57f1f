//! Generation-checked slots for items in flight and at sinks.

/// A slab with generation-checked ids, so that an id from a reused slot is recognised as stale.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    slots: Vec<(u32, Option<T>)>,
    free: Vec<u32>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    pub(crate) fn insert(&mut self, value: T) -> (u32, u32) {
        if let Some(slot) = self.free.pop() {
            let s = &mut self.slots[slot as usize];
            s.0 = s.0.wrapping_add(1);
            s.1 = Some(value);
            (slot, s.0)
        } else {
            self.slots.push((0, Some(value)));
            ((self.slots.len() - 1) as u32, 0)
        }
    }

    pub(crate) fn get(&self, slot: u32, gen: u32) -> Option<&T> {
        match self.slots.get(slot as usize) {
            Some((g, Some(v))) if *g == gen => Some(v),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, slot: u32, gen: u32) -> Option<T> {
        let s = self.slots.get_mut(slot as usize)?;
        if s.0 != gen || s.1.is_none() {
            return None;
        }
        self.free.push(slot);
        s.1.take()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|(_, v)| v.as_ref())
    }
}
