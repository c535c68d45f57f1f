package kafkaesque.peers;

import io.confluent.parallelconsumer.ParallelConsumerOptions;
import io.confluent.parallelconsumer.ParallelConsumerOptions.ProcessingOrder;
import io.confluent.parallelconsumer.ParallelStreamProcessor;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * One side of the benchmark's peer comparison, in a JVM of its own: Confluent's Parallel Consumer
 * ({@code --side pc}) or a plain {@link KafkaConsumer} poll loop ({@code --side plain}), over one
 * topic in a new group, with the synthetic handler the Rust side runs too.
 *
 * <p>The protocol is the one {@code kafkaesque bench --peer-worker} speaks (see
 * crates/bench/src/compare/peers/side.rs), one line each on standard output:
 *
 * <ul>
 *   <li>{@code ready} once the timed pass has handled its first record;
 *   <li>{@code done <partition> <offset>} per handled record, with {@code --stream};
 *   <li>last, one JSON object: records handled, seconds from the first record fetched to the
 *       last handled, the process's CPU seconds over that span, its peak RSS, and with
 *       {@code --samples} one {@code [done_ms, created_ms, hot, 1]} per record.
 * </ul>
 *
 * <p>The timed pass ends after {@code --records} records, or when standard input says
 * {@code expect N} and N have been handled, or when standard input closes. Before it, with
 * {@code --warmup N}, the same code consumes N records of the same topic in a group of its own,
 * so that the JIT has compiled the hot paths before anything is timed.
 */
public final class Harness {
    private final Map<String, String> args;
    private final String side;
    private final Handler handler;
    private final boolean stream;
    private final boolean samples;

    private Harness(Map<String, String> args) {
        this.args = args;
        this.side = arg("side", "pc");
        this.handler = new Handler(
                Long.parseLong(arg("base-ms", "0")),
                Long.parseLong(arg("spread-ms", "0")),
                args.get("hot-key"),
                Long.parseLong(arg("hot-ms", "0")));
        this.stream = args.containsKey("stream");
        this.samples = args.containsKey("samples");
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i < argv.length; i++) {
            if (!argv[i].startsWith("--")) {
                throw new IllegalArgumentException("unexpected argument " + argv[i]);
            }
            String name = argv[i].substring(2);
            boolean flag = i + 1 >= argv.length || argv[i + 1].startsWith("--");
            args.put(name, flag ? "" : argv[++i]);
        }
        new Harness(args).run();
        // Parallel Consumer's and the Kafka clients' threads may linger after close.
        System.exit(0);
    }

    private String arg(String name, String otherwise) {
        return args.getOrDefault(name, otherwise);
    }

    private String need(String name) {
        String v = args.get(name);
        if (v == null) {
            throw new IllegalArgumentException("--" + name + " is required");
        }
        return v;
    }

    private void run() throws Exception {
        long warmup = Long.parseLong(arg("warmup", "0"));
        if (warmup > 0) {
            pass(need("group") + "-warmup", warmup, null, false);
        }
        Pass timed = new Pass(Long.parseLong(arg("records", "0")));
        Thread input = new Thread(() -> readInput(timed), "stdin");
        input.setDaemon(true);
        input.start();
        pass(need("group"), timed.expected.get(), timed, true);
        String json = timed.json(Rss.peakBytes());
        synchronized (System.out) {
            System.out.println(json);
            System.out.flush();
        }
    }

    /** Standard input: {@code expect N} ends the pass after N records; its end ends it now. */
    private static void readInput(Pass pass) {
        try (BufferedReader in = new BufferedReader(
                new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            String line;
            while ((line = in.readLine()) != null) {
                line = line.trim();
                if (line.startsWith("expect ")) {
                    pass.expect(Long.parseLong(line.substring(7).trim()));
                }
            }
        } catch (IOException ignored) {
            // closed: the same as its end
        }
        pass.finish();
    }

    /** Consumes in group {@code group} until {@code pass} (or, for the warm-up, N records) ends. */
    private void pass(String group, long records, Pass timed, boolean report) throws Exception {
        Pass pass = timed != null ? timed : new Pass(records);
        switch (side) {
            case "pc" -> parallelConsumer(group, pass, report);
            case "plain" -> plain(group, pass, report);
            default -> throw new IllegalArgumentException("--side must be pc or plain, not " + side);
        }
    }

    private Properties consumerProperties(String group) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, need("brokers"));
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        // Parallel Consumer commits itself and refuses a consumer that auto-commits.
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        // The session settings every group of the benchmark gets (crates/bench/src/rig.rs).
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "6000");
        p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
        return p;
    }

    /**
     * Parallel Consumer as its README teaches: a KafkaConsumer handed to the options, the ordering
     * and maxConcurrency the row asks for, the default commit mode, and {@code poll} with a
     * handler per record.
     */
    private void parallelConsumer(String group, Pass pass, boolean report) throws Exception {
        MarkingConsumer consumer = new MarkingConsumer(consumerProperties(group), pass);
        ParallelConsumerOptions<byte[], byte[]> options = ParallelConsumerOptions.<byte[], byte[]>builder()
                .ordering(ProcessingOrder.valueOf(arg("ordering", "KEY")))
                .maxConcurrency(Integer.parseInt(arg("concurrency", "16")))
                .consumer(consumer)
                .build();
        ParallelStreamProcessor<byte[], byte[]> pc = ParallelStreamProcessor.createEosStreamProcessor(options);
        pc.subscribe(List.of(need("topic")));
        pc.poll(context -> {
            ConsumerRecord<byte[], byte[]> r = context.getSingleConsumerRecord();
            handled(pass, r, handler.handle(r), report);
        });
        pass.await();
        pc.close();
    }

    /** The JVM's own baseline: one KafkaConsumer, its poll loop, the handler inline. */
    private void plain(String group, Pass pass, boolean report) throws Exception {
        try (MarkingConsumer consumer = new MarkingConsumer(consumerProperties(group), pass)) {
            consumer.subscribe(List.of(need("topic")));
            while (!pass.isOver()) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(100))) {
                    handled(pass, r, handler.handle(r), report);
                }
            }
        }
    }

    private void handled(Pass pass, ConsumerRecord<byte[], byte[]> r, boolean hot, boolean report) {
        long now = System.currentTimeMillis();
        if (report && pass.firstHandled()) {
            say("ready");
        }
        if (report && stream) {
            say("done " + r.partition() + " " + r.offset());
        }
        if (report && samples) {
            pass.sample(now, r.timestamp(), hot);
        }
        pass.completed();
    }

    private static void say(String line) {
        synchronized (System.out) {
            System.out.println(line);
            System.out.flush();
        }
    }

    /**
     * The synthetic handler, the same as the Rust side's (crates/bench/src/compare/peers/side.rs):
     * sleeps {@code base} ms, plus 0 to {@code spread} ms chosen by the record's offset (so that
     * both sides sleep alike for the same records), plus {@code hotMs} for the hot key. Returns
     * whether the record was the hot key's.
     */
    record Handler(long baseMs, long spreadMs, String hotKey, long hotMs) {
        boolean handle(ConsumerRecord<byte[], byte[]> r) {
            boolean hot = hotKey != null && r.key() != null
                    && hotKey.equals(new String(r.key(), StandardCharsets.UTF_8));
            long ms = baseMs + (spreadMs > 0 ? Long.remainderUnsigned(mix(r.offset()), spreadMs + 1) : 0)
                    + (hot ? hotMs : 0);
            if (ms > 0) {
                try {
                    Thread.sleep(ms);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            return hot;
        }

        /** splitmix64's finaliser: the same bits as {@code mix} on the Rust side. */
        static long mix(long x) {
            long z = x + 0x9E3779B97F4A7C15L;
            z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
            z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
            return z ^ (z >>> 31);
        }
    }

    /** A KafkaConsumer that marks the moment its first non-empty poll returns: the clock's start. */
    static final class MarkingConsumer extends KafkaConsumer<byte[], byte[]> {
        private final Pass pass;

        MarkingConsumer(Properties p, Pass pass) {
            super(p);
            this.pass = pass;
        }

        @Override
        public ConsumerRecords<byte[], byte[]> poll(Duration timeout) {
            ConsumerRecords<byte[], byte[]> records = super.poll(timeout);
            if (!records.isEmpty()) {
                pass.fetched();
            }
            return records;
        }
    }

    /** One pass: how many records it waits for, what it counted, and the clock's two marks. */
    static final class Pass {
        final AtomicLong expected;
        final AtomicLong done = new AtomicLong();
        final CountDownLatch over = new CountDownLatch(1);
        private volatile Mark first;
        private volatile Mark last;
        private final List<long[]> samples = new ArrayList<>();

        /** {@code expected} 0: until standard input says how many, or closes. */
        Pass(long expected) {
            this.expected = new AtomicLong(expected <= 0 ? Long.MAX_VALUE : expected);
        }

        synchronized void fetched() {
            if (first == null) {
                first = Mark.now();
            }
        }

        private final AtomicBoolean ready = new AtomicBoolean();

        /** True for the first record handled only. */
        boolean firstHandled() {
            return ready.compareAndSet(false, true);
        }

        synchronized void sample(long doneMs, long createdMs, boolean hot) {
            samples.add(new long[] {doneMs, createdMs, hot ? 1 : 0, 1});
        }

        void completed() {
            long n = done.incrementAndGet();
            if (n >= expected.get()) {
                finish();
            }
        }

        void expect(long n) {
            expected.set(n);
            if (done.get() >= n) {
                finish();
            }
        }

        synchronized void finish() {
            if (last == null) {
                last = Mark.now();
            }
            over.countDown();
        }

        boolean isOver() {
            return over.getCount() == 0;
        }

        void await() throws InterruptedException {
            over.await(Long.MAX_VALUE, TimeUnit.DAYS);
        }

        synchronized String json(long peakRss) {
            Mark start = first != null ? first : last;
            StringBuilder s = new StringBuilder(64 + samples.size() * 32);
            s.append("{\"records\":").append(Math.min(done.get(), expected.get()));
            s.append(",\"seconds\":").append(start == null ? 0.0 : (last.nanos - start.nanos) / 1e9);
            s.append(",\"cpu_seconds\":").append(start == null ? 0.0 : last.cpu - start.cpu);
            s.append(",\"peak_rss_bytes\":").append(peakRss);
            s.append(",\"samples\":[");
            for (int i = 0; i < samples.size(); i++) {
                if (i > 0) {
                    s.append(',');
                }
                long[] x = samples.get(i);
                s.append('[').append(x[0]).append(',').append(x[1]).append(',').append(x[2]).append(',')
                        .append(x[3]).append(']');
            }
            return s.append("]}").toString();
        }
    }

    /** A point in time and the process's CPU seconds then. */
    record Mark(long nanos, double cpu) {
        static Mark now() {
            return new Mark(System.nanoTime(), Rss.cpuSeconds());
        }
    }

    /** What the kernel says of this process, read as the Rust side reads it (crates/bench/src/stats.rs). */
    static final class Rss {
        /** VmHWM of /proc/self/status, in bytes; 0 where the kernel does not tell. */
        static long peakBytes() {
            try {
                for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                    if (line.startsWith("VmHWM:")) {
                        return Long.parseLong(line.split("\\s+")[1]) * 1024;
                    }
                }
            } catch (IOException | RuntimeException ignored) {
                // not Linux
            }
            return 0;
        }

        /** utime + stime of /proc/self/stat, in seconds (10 ms ticks); 0 where not told. */
        static double cpuSeconds() {
            try {
                String stat = Files.readString(Path.of("/proc/self/stat"));
                String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
                return (Long.parseLong(f[11]) + Long.parseLong(f[12])) / 100.0;
            } catch (IOException | RuntimeException e) {
                return 0;
            }
        }
    }

}
