//! Compute permits and the bounded line for them.
//!
//! A request joins the line when its headers arrive ([`Admission::enter`]), receives its body
//! while in line, and leaves it when it takes a permit ([`Place::admit`]) or is dropped. At
//! most `--compute-permits` + `--max-queue` requests are admitted at once; the rest are
//! refused from their headers.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::budget::Reservation;
use super::{Admission, Admitted, Refusal};
use crate::coding::Coding;

impl Admission {
    /// A place in line with an empty reservation, or [`Refusal::QueueFull`] when the requests
    /// already in line fill the queue and the free permits.
    pub(super) fn place(self: &Arc<Self>) -> Result<Place, Refusal> {
        let joined = self
            .in_line
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                let room = self
                    .max_queue
                    .saturating_add(self.permits.available_permits());
                (n < room).then_some(n + 1)
            });
        if joined.is_err() {
            return Err(Refusal::QueueFull);
        }
        Ok(Place {
            spot: Spot(Arc::clone(self)),
            reservation: self.reservation(),
        })
    }
}

/// A request's place in line for a compute permit, with the memory it has reserved so far.
#[derive(Debug)]
pub struct Place {
    spot: Spot,
    reservation: Reservation,
}

impl Place {
    /// The memory held for the request (its body's buffer, while it is read).
    pub fn reservation(&mut self) -> &mut Reservation {
        &mut self.reservation
    }

    /// Waits for a compute permit, then leaves the line: the request is admitted and will
    /// answer in `coding`.
    pub async fn admit(self, coding: Option<Coding>) -> Result<Admitted, Refusal> {
        let Place { spot, reservation } = self;
        let permit = Arc::clone(&spot.0.permits)
            .acquire_owned()
            .await
            .map_err(|_closed| Refusal::QueueFull)?;
        drop(spot);
        Ok(Admitted::new(permit, reservation, coding))
    }
}

/// Being counted in line; left on drop, however the wait ends.
#[derive(Debug)]
struct Spot(Arc<Admission>);

impl Drop for Spot {
    fn drop(&mut self) {
        self.0.in_line.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn permits_are_granted_then_queued_then_refused() {
        let admission = Admission::new(1, 1, 1024);
        let first = admission.enter(None).unwrap().admit(None).await.unwrap();
        assert_eq!(admission.computing(), 1);

        let queued = {
            let admission = Arc::clone(&admission);
            tokio::spawn(async move { admission.enter(None)?.admit(None).await.map(drop) })
        };
        while admission.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(admission.enter(None).err(), Some(Refusal::QueueFull));

        drop(first);
        queued.await.unwrap().unwrap();
        assert_eq!(admission.waiting(), 0);
        assert_eq!(admission.computing(), 0);
    }

    #[tokio::test]
    async fn free_permits_make_room_in_line_for_bodies_still_arriving() {
        let admission = Admission::new(2, 0, 1024);
        let first = admission.enter(None).unwrap();
        let _second = admission.enter(None).unwrap();
        assert_eq!(admission.waiting(), 2);
        assert_eq!(admission.enter(None).err(), Some(Refusal::QueueFull));
        let _computing = first.admit(None).await.unwrap();
        assert_eq!((admission.waiting(), admission.computing()), (1, 1));
        assert_eq!(admission.enter(None).err(), Some(Refusal::QueueFull));
    }

    #[tokio::test]
    async fn a_request_dropped_while_queued_leaves_the_queue() {
        let admission = Admission::new(1, 1, 1024);
        let _held = admission.enter(None).unwrap().admit(None).await.unwrap();
        let waiting = admission.enter(None).unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(10), waiting.admit(None)).await;
        assert!(waited.is_err());
        assert_eq!(admission.waiting(), 0);
    }

    #[test]
    fn a_declared_body_is_reserved_from_the_headers() {
        let admission = Admission::new(1, 4, 100);
        let place = admission.enter(Some(60)).unwrap();
        assert_eq!(admission.reserved(), 60);
        assert_eq!(
            admission.enter(Some(50)).err(),
            Some(Refusal::MemoryBusy { wanted: 50 })
        );
        assert_eq!(admission.waiting(), 1, "a refused request leaves the line");
        drop(place);
        assert_eq!((admission.reserved(), admission.waiting()), (0, 0));
    }
}
