//! The consumer: a driver thread that owns the engine and the Kafka clients, a fetcher thread
//! that takes records off the partitions' queues, and handler tasks on the caller's tokio
//! runtime.
//!
//! Why a thread of its own for the driver: librdkafka runs rebalance callbacks inside `poll`,
//! and a revoke must wait (briefly) for in-flight handlers before committing. Doing that on a
//! tokio worker would block the very runtime the handlers need; on a dedicated thread it blocks
//! nothing else. The thread never waits on a handler except there, so the poll loop keeps the
//! group membership alive however slow the handlers are: back-pressure stops taking records
//! from a full partition's own queue (`feeds.rs`), never from the group's. Why a fetcher thread
//! besides: see `fetcher.rs`.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kafkaesque_engine::{Engine, HotKeyPolicy};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::admin::{metadata_budget, prepare_topics};
use crate::batch::{BatchHandler, BatchSpawner, Handlers};
use crate::clients::{check, client_config, property, Role};
use crate::config::{ConsumerBuilder, ConsumerConfig};
use crate::context::GroupContext;
use crate::control::Control;
use crate::error::{Error, Result};
use crate::events::{self, Event, EventRx, EventTx};
use crate::fetcher::{self, Batches, CloseOnDrop, Queues};
use crate::handler::Handler;
use crate::observe::{Labels, Observer};
use crate::produce::{ProduceHandler, Producing};
use crate::sinks::Sinks;
use crate::spawn::Spawner;
use crate::state::{transactional_id, Inputs, OverflowContext, State};

/// A key-ordered, massively concurrent Kafka consumer. Build one with [`Consumer::builder`].
#[derive(Debug)]
pub struct Consumer {
    cfg: ConsumerConfig,
    observer: Observer,
    /// The driver's event channel, made here so that a [`Control`] handle got before `run` can
    /// queue commands in it.
    tx: EventTx,
    events: Mutex<EventRx>,
}

impl ConsumerBuilder {
    /// Checks everything that can be checked without a broker.
    pub fn build(self) -> Result<Consumer> {
        let (tx, events) = events::channel();
        let cfg = self.validate()?;
        check(&cfg)?;
        let labels = Labels::new(&cfg.group_id, &client_id(&cfg));
        Ok(Consumer {
            cfg,
            observer: Observer::new(labels),
            tx,
            events: Mutex::new(events),
        })
    }
}

/// The group consumer's `client.id`: as set, else librdkafka's default.
fn client_id(cfg: &ConsumerConfig) -> String {
    property(cfg, "client.id").unwrap_or("rdkafka").to_owned()
}

/// What the driver thread starts with: the clients, and the state that carries out the
/// engine's actions, shared with the group consumer's rebalance callbacks.
struct Setup {
    consumer: Arc<BaseConsumer<GroupContext>>,
    state: Arc<Mutex<State>>,
    queues: Arc<Queues<GroupContext>>,
}

/// The threads at work: the driver reports how it ended on `done`.
struct Running {
    driver: JoinHandle<()>,
    done: oneshot::Receiver<Result<()>>,
}

impl Consumer {
    /// A builder with defaults that suit a key-ordered consumer; only the group and the topics
    /// must be given.
    pub fn builder() -> ConsumerBuilder {
        ConsumerBuilder::default()
    }

    /// A live view of partitions and the busiest keys, refreshed every second.
    pub fn observer(&self) -> Observer {
        self.observer.clone()
    }

    /// A handle to pause and resume partitions, change the limits and shut down while `run`
    /// runs (see [`Control`]).
    pub fn control(&self) -> Control {
        Control::new(self.tx.clone(), self.cfg.engine.limits.clone())
    }

    /// Consumes until `shutdown` resolves: then stops fetching, lets in-flight work finish (up
    /// to the drain timeout), commits, and leaves the group. A [`Control`] handle may ask for
    /// that shutdown, or for one that handles everything fetched, sooner. Handlers run as tasks
    /// on the current tokio runtime, a multi-thread or a current-thread one. Returns an error
    /// only for what it cannot recover from (a fatal client error).
    pub async fn run<H, S>(self, handler: H, shutdown: S) -> Result<()>
    where
        H: Handler,
        S: Future<Output = ()>,
    {
        self.run_with(|_| handler, shutdown).await
    }

    /// Like [`run`](Self::run), with a handler that returns records to produce: each record
    /// completes (and its offset can be committed) only once Kafka has acknowledged its outputs,
    /// and a key's outputs are produced in the order of their sources. See [`ProduceHandler`],
    /// and [`ConsumerBuilder::exactly_once`] for outputs that a `read_committed` reader sees
    /// exactly once.
    pub async fn run_producing<P, S>(self, handler: P, shutdown: S) -> Result<()>
    where
        P: ProduceHandler,
        S: Future<Output = ()>,
    {
        self.run_with(
            |sinks| Producing::new(handler, sinks.producer().clone()),
            shutdown,
        )
        .await
    }

    /// Runs the handler `make` builds once the consumer's producer exists.
    async fn run_with<H, S>(self, make: impl FnOnce(&Sinks) -> H, shutdown: S) -> Result<()>
    where
        H: Handler,
        S: Future<Output = ()>,
    {
        let (inline, timeout) = (self.cfg.inline_first_poll, self.cfg.handler_timeout);
        let make = move |tx: &EventTx, sinks: &Sinks| {
            let handler = Arc::new(make(sinks));
            Handlers::Each(Spawner::new(handler, tx.clone(), inline, timeout))
        };
        self.start_with(make, shutdown).await
    }

    /// As [`run`](Self::run), with a handler that takes batches of records (see
    /// [`BatchHandler`] for what a batch holds, and
    /// [`ConsumerBuilder::batch`] for their size).
    pub async fn run_batches<H, S>(self, handler: H, shutdown: S) -> Result<()>
    where
        H: BatchHandler,
        S: Future<Output = ()>,
    {
        let (batch, timeout) = (self.cfg.batch, self.cfg.handler_timeout);
        let make = move |tx: &EventTx, _: &Sinks| {
            Handlers::Batched(BatchSpawner::new(
                Arc::new(handler),
                tx.clone(),
                batch,
                timeout,
            ))
        };
        self.start_with(make, shutdown).await
    }

    /// Runs the handlers `make` builds once the consumer's producer exists, on the event channel
    /// that any [`Control`] handle already holds the sender of.
    async fn start_with<S>(
        self,
        make: impl FnOnce(&EventTx, &Sinks) -> Handlers,
        shutdown: S,
    ) -> Result<()>
    where
        S: Future<Output = ()>,
    {
        let tx = self.tx.clone();
        let rx = std::mem::replace(
            &mut *self.events.lock().unwrap_or_else(|e| e.into_inner()),
            events::channel().1,
        );
        let setup = self.setup(make, &tx, rx).await?;
        let running = start(setup, self.cfg)?;
        wait(running, shutdown, &tx).await
    }

    /// Prepares the topics and creates the engine, the clients and the driver state.
    async fn setup(
        &self,
        make: impl FnOnce(&EventTx, &Sinks) -> Handlers,
        tx: &EventTx,
        events: EventRx,
    ) -> Result<Setup> {
        let cfg = &self.cfg;
        let (prepared, budget) = tokio::join!(prepare_topics(cfg), metadata_budget(cfg));
        prepared?;
        let mut engine_cfg = cfg.engine.clone();
        engine_cfg.seed ^= std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
        let (budget, from_broker) = budget;
        engine_cfg.limits.metadata_max_bytes = budget;
        info!(bytes = budget, ?from_broker, "commit metadata budget");
        let engine = Engine::new(engine_cfg).map_err(|e| Error::config(e.field, e.problem))?;
        let txn_id = transactional_id(cfg);
        let mut sinks = Sinks::new(cfg, txn_id.as_deref(), tx.clone())?;
        sinks.failures =
            metrics::counter!("kafkaesque_sink_failures_total", self.observer.labels.get());
        let spawn = make(tx, &sinks);
        let mut consumer: BaseConsumer<GroupContext> = client_config(cfg, Role::Group)
            .create_with_context(GroupContext::new(
                tx.clone(),
                self.observer.clone(),
                cfg.callbacks.clone(),
            ))
            .map_err(Error::kafka("creating the consumer"))?;
        // An idle driver sleeps until something arrives: the main queue (rebalances, errors)
        // wakes it through this callback, the fetcher by unparking it. Outcomes and deliveries
        // are picked up by its short naps while work is running.
        let queues: Arc<Queues<GroupContext>> = Arc::default();
        let wake = queues.clone();
        consumer.set_nonempty_callback(move || wake.wake_driver());
        let overflow = if matches!(cfg.engine.hot_key, HotKeyPolicy::Divert) {
            let mut c: BaseConsumer<OverflowContext> = client_config(cfg, Role::Overflow)
                .create_with_context(OverflowContext::new(tx.clone(), cfg.callbacks.clone()))
                .map_err(Error::kafka("creating the overflow consumer"))?;
            // Diverted records coming back wake an idle driver too.
            let wake = queues.clone();
            c.set_nonempty_callback(move || wake.wake_driver());
            Some(c)
        } else {
            None
        };
        let inputs = Inputs {
            events,
            queues: queues.clone(),
        };
        // The state keeps the limits as the engine has them, the broker's budget included.
        let mut state_cfg = cfg.clone();
        state_cfg.engine.limits.metadata_max_bytes = budget;
        let state = State::new(
            engine,
            inputs,
            spawn,
            sinks,
            overflow,
            state_cfg,
            self.observer.clone(),
        );
        Ok(Setup {
            consumer: Arc::new(consumer),
            state: Arc::new(Mutex::new(state)),
            queues,
        })
    }
}

/// Starts the fetcher thread and the driver thread, which subscribes and runs the driver loop.
fn start(setup: Setup, cfg: ConsumerConfig) -> Result<Running> {
    let Setup {
        consumer,
        state,
        queues,
    } = setup;
    // Before any partition gets a queue: each queue's callback wakes the fetcher.
    let (fetcher, batches) = fetcher::start(&queues).map_err(|e| Error::Driver(e.to_string()))?;
    consumer.context().install(state.clone(), &consumer);
    let (done_tx, done) = oneshot::channel();
    let rt = tokio::runtime::Handle::current();
    let driver = std::thread::Builder::new()
        .name("kafkaesque-driver".into())
        .spawn(move || {
            // Handlers are started (and, if asked, first polled) on this thread: it lives inside
            // the caller's runtime for good, rather than entering it once per record.
            let _runtime = rt.enter();
            // Closes the queues however this thread ends, a panic included: they hold
            // references to the consumer, and without them it can be dropped (and leave the
            // group) when this thread ends.
            let closing = CloseOnDrop(queues.clone());
            let _ = queues.driver.set(std::thread::current());
            let r = drive(&consumer, &state, &cfg, &batches);
            drop(closing);
            if fetcher.join().is_err() {
                error!("the fetcher thread panicked");
            }
            let _ = done_tx.send(r);
        })
        .map_err(|e| Error::Driver(e.to_string()))?;
    Ok(Running { driver, done })
}

/// Waits for the driver to end, telling it to shut down once `shutdown` resolves.
async fn wait(running: Running, shutdown: impl Future<Output = ()>, tx: &EventTx) -> Result<()> {
    let Running { driver, mut done } = running;
    tokio::pin!(shutdown);
    let result = tokio::select! {
        r = &mut done => r,
        () = &mut shutdown => {
            let _ = tx.send(Event::Shutdown);
            driver.thread().unpark();
            done.await
        }
    };
    let _ = tokio::task::spawn_blocking(move || driver.join()).await;
    result.map_err(|_| Error::Driver("the driver thread panicked".into()))?
}

/// The driver state, locked. Never held across `poll`: the rebalance callbacks inside it take
/// it too.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().expect("state lock")
}

/// Shortest and longest pause of the driver while handlers run and Kafka has nothing new.
const MIN_NAP: Duration = Duration::from_micros(100);
const MAX_NAP: Duration = Duration::from_millis(2);
/// Longest sleep of an idle driver (nothing running, nothing fetched): it is woken sooner by
/// anything arriving in a queue, and shutdown wakes it too.
const IDLE_NAP: Duration = Duration::from_millis(50);

/// The driver loop. See the module documentation.
fn drive(
    consumer: &BaseConsumer<GroupContext>,
    state: &Mutex<State>,
    cfg: &ConsumerConfig,
    batches: &Batches<GroupContext>,
) -> Result<()> {
    lock(state).answer_events_here(cfg.engine.limits.max_in_flight / 4);
    // Commands sent before `run` (a pause) hold before the first record is taken.
    lock(state).drain_events(consumer);
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    lock(state).start_transactions()?;
    consumer
        .subscribe(&topics)
        .map_err(Error::kafka("subscribing"))?;
    info!(group = %cfg.group_id, topics = ?cfg.topics, "consumer started");
    let mut next_commit = Instant::now() + cfg.commit_interval;
    let mut next_publish = Instant::now() + Duration::from_secs(1);
    let mut nap = MIN_NAP;
    loop {
        // The main queue: rebalances and errors are served here (callbacks inside `poll` take
        // the state, so it is not held), and records of partitions without a queue of their own.
        let mut got = 0;
        while got < 512 {
            match consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => {
                    lock(state).on_message(&m);
                    got += 1;
                }
                Some(Err(e)) => {
                    check_fatal(consumer, e)?;
                    break;
                }
            }
        }
        let mut st = lock(state);
        st.retry_assign_hook(consumer);
        got += st.take_batches(batches, consumer);
        got += st.poll_overflow();
        let events = st.drain_events(consumer);
        let now_ms = st.now_ms();
        st.engine.advance_time(now_ms);
        let now = Instant::now();
        st.sinks.retry_due(now);
        st.sinks.poll();
        st.run_actions(consumer);
        if now >= next_commit {
            let commits = st.engine.commits();
            st.commit(consumer, commits);
            next_commit = now + cfg.commit_interval;
        }
        if now >= next_publish {
            st.publish();
            next_publish = now + Duration::from_secs(1);
        }
        if let Some(reason) = &st.fatal {
            return Err(Error::Transaction(reason.clone()));
        }
        if st.shutdown {
            drop(st);
            return shut_down(consumer, state, cfg, batches);
        }
        if got > 0 || events > 0 {
            nap = MIN_NAP;
            continue;
        }
        let busy = st.engine.in_flight() > 0 || st.sinks.pending() > 0;
        drop(st);
        if busy {
            // Kafka has nothing new and work is running. Nap rather than block on the channel:
            // a handler's send rarely has to wake this thread, and the outcomes that arrive
            // meanwhile are taken in one batch. Naps lengthen while nothing arrives, so slow
            // handlers cost no CPU here; a record arriving ends the nap, and so do a quarter of
            // the concurrency's worth of outcomes waiting (`events::Doorbell`).
            std::thread::park_timeout(nap);
            nap = (nap * 2).min(MAX_NAP);
        } else {
            // Idle: sleep until a queue receives something (its callback wakes this thread),
            // and look at the clock and the channel now and then.
            std::thread::park_timeout(IDLE_NAP);
        }
    }
}

/// Graceful shutdown: stop fetching, finish what is in flight (or everything fetched, see
/// [`ShutdownMode`](crate::ShutdownMode)), commit synchronously, leave the group.
fn shut_down(
    consumer: &BaseConsumer<GroupContext>,
    state: &Mutex<State>,
    cfg: &ConsumerConfig,
    batches: &Batches<GroupContext>,
) -> Result<()> {
    {
        let mut st = lock(state);
        st.feeds.queues.stop();
        let deadline = Instant::now() + cfg.drain_timeout;
        let drained = if st.drain_fetched {
            info!("shutting down: handling everything fetched");
            drain_fetched(&mut st, consumer, batches, deadline)
        } else {
            info!("shutting down: draining in-flight work");
            for h in st.handles() {
                st.engine.drain(h);
            }
            st.drain_until(consumer, deadline, |s| {
                s.engine.in_flight() == 0 && s.sinks.pending() == 0
            })
        };
        if !drained {
            warn!("drain timeout at shutdown: unfinished work will be replayed by the next owner");
        }
        let commits = st.engine.commits();
        st.commit_final(consumer, commits);
        st.sinks.flush(Duration::from_secs(5));
    }
    consumer.unsubscribe();
    // Serve the revoke that leaving the group triggers.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && consumer
            .assignment()
            .map(|a| a.count() > 0)
            .unwrap_or(false)
    {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    info!("consumer stopped");
    Ok(())
}

/// Handles everything already fetched: the batches still on their way from the (stopping)
/// fetcher, what partitions held at their caps kept, and what the engine holds. Returns whether
/// it all finished before the deadline.
fn drain_fetched(
    st: &mut State,
    consumer: &BaseConsumer<GroupContext>,
    batches: &Batches<GroupContext>,
    deadline: Instant,
) -> bool {
    let empty =
        |s: &State| s.engine.held().0 == 0 && s.sinks.pending() == 0 && !s.feeds.keeps_any();
    loop {
        st.take_batches(batches, consumer);
        let ended = batches.ended();
        let now = Instant::now();
        if ended && empty(st) {
            return true;
        }
        if now >= deadline {
            return false;
        }
        // Until something finishes, or briefly when only the fetcher's end is awaited.
        let step = (now + Duration::from_millis(5)).min(deadline);
        st.drain_until(consumer, step, |s| ended && empty(s));
    }
}

fn check_fatal(consumer: &BaseConsumer<GroupContext>, e: KafkaError) -> Result<()> {
    if let Some((code, reason)) = consumer.client().fatal_error() {
        error!(?code, %reason, "fatal consumer error");
        return Err(Error::Kafka {
            context: "consuming",
            source: e,
        });
    }
    warn!(error = %e, "consumer error (librdkafka will retry)");
    Ok(())
}
