package bench;

import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Level;
import java.util.logging.Logger;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.springframework.context.annotation.AnnotationConfigApplicationContext;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.kafka.annotation.BackOff;
import org.springframework.kafka.annotation.DltHandler;
import org.springframework.kafka.annotation.EnableKafka;
import org.springframework.kafka.annotation.EnableKafkaRetryTopic;
import org.springframework.kafka.annotation.KafkaListener;
import org.springframework.kafka.annotation.RetryableTopic;
import org.springframework.kafka.config.ConcurrentKafkaListenerContainerFactory;
import org.springframework.kafka.core.ConsumerFactory;
import org.springframework.kafka.core.DefaultKafkaConsumerFactory;
import org.springframework.kafka.core.DefaultKafkaProducerFactory;
import org.springframework.kafka.core.KafkaAdmin;
import org.springframework.kafka.core.KafkaTemplate;
import org.springframework.kafka.core.ProducerFactory;
import org.springframework.kafka.retrytopic.SameIntervalTopicReuseStrategy;
import org.springframework.scheduling.TaskScheduler;
import org.springframework.scheduling.concurrent.ThreadPoolTaskScheduler;

/**
 * S2 peer: Spring Kafka's non-blocking retries (@RetryableTopic, one retry topic with a fixed
 * delay, then a dead-letter topic), without Spring Boot. Records whose key starts with 'f' fail
 * on the main topic and succeed on their retry. Timed from the first record handled until every
 * record has been handled successfully; the latency is each retried record's lateness: the time it
 * was handled on the retry topic minus its due time (first failure + retry delay). Prints one JSON
 * line.
 */
@Configuration
@EnableKafka
@EnableKafkaRetryTopic
public class Main {
  static final AtomicLong first = new AtomicLong();
  static final AtomicLong last = new AtomicLong();
  static final AtomicInteger ok = new AtomicInteger();
  static final AtomicInteger dlt = new AtomicInteger();
  static final ConcurrentHashMap<String, Long> failedAt = new ConcurrentHashMap<>();
  static final java.util.Set<String> handled = ConcurrentHashMap.newKeySet();
  static final ConcurrentLinkedQueue<Long> lateness = new ConcurrentLinkedQueue<>();
  static final CountDownLatch done = new CountDownLatch(1);
  static int records;
  static long retryNanos;

  public static void main(String[] args) throws Exception {
    Logger.getLogger("").setLevel(Level.WARNING);
    records = Integer.parseInt(prop("bench.records"));
    retryNanos = Long.parseLong(prop("bench.retryMs")) * 1_000_000L;
    prop("bench.brokers");
    prop("bench.topic");
    prop("bench.group");
    prop("bench.partitions");
    prop("bench.concurrency");
    try (AnnotationConfigApplicationContext ctx = new AnnotationConfigApplicationContext(Main.class)) {
      done.await();
      double seconds = (last.get() - first.get()) / 1e9;
      long[] l = lateness.stream().mapToLong(Long::longValue).sorted().toArray();
      String p50 = l.length > 0 ? String.format("%.3f", l[(int) (l.length * 0.50)] / 1e6) : "null";
      String p99 =
          l.length > 0 ? String.format("%.3f", l[Math.min(l.length - 1, (int) (l.length * 0.99))] / 1e6) : "null";
      System.out.printf(
          "{\"records\":%d,\"seconds\":%.6f,\"p50_ms\":%s,\"p99_ms\":%s,\"peak_rss_kb\":%d,\"extra\":{\"retried\":%d,\"dead_lettered\":%d}}%n",
          records, seconds, p50, p99, vmHWM(), l.length, dlt.get());
      System.out.flush();
      Runtime.getRuntime().halt(0); // the result is out; closing the containers is not what is measured
    }
  }

  /** Peak resident set size of this JVM, in kB (VmHWM of /proc/self/status), or 0. */
  static long vmHWM() {
    try {
      for (String l : java.nio.file.Files.readAllLines(java.nio.file.Paths.get("/proc/self/status"))) {
        if (l.startsWith("VmHWM:")) {
          return Long.parseLong(l.substring(6).replace("kB", "").trim());
        }
      }
    } catch (java.io.IOException | NumberFormatException e) {
      return 0;
    }
    return 0;
  }

  static String prop(String k) {
    String v = System.getProperty(k);
    if (v == null || v.isEmpty()) {
      System.err.println("missing -D" + k);
      System.exit(2);
    }
    return v;
  }

  @Bean
  public ConsumerFactory<String, byte[]> consumerFactory() {
    Map<String, Object> p = new HashMap<>();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, System.getProperty("bench.brokers"));
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    return new DefaultKafkaConsumerFactory<>(p, new StringDeserializer(), new ByteArrayDeserializer());
  }

  @Bean
  public ConcurrentKafkaListenerContainerFactory<String, byte[]> kafkaListenerContainerFactory(
      ConsumerFactory<String, byte[]> cf) {
    ConcurrentKafkaListenerContainerFactory<String, byte[]> f = new ConcurrentKafkaListenerContainerFactory<>();
    f.setConsumerFactory(cf);
    // One consumer per partition, as whippet runs one worker per partition.
    f.setConcurrency(Integer.parseInt(System.getProperty("bench.concurrency")));
    return f;
  }

  @Bean
  public ProducerFactory<String, byte[]> producerFactory() {
    Map<String, Object> p = new HashMap<>();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, System.getProperty("bench.brokers"));
    return new DefaultKafkaProducerFactory<>(p, new StringSerializer(), new ByteArraySerializer());
  }

  @Bean
  public KafkaTemplate<String, byte[]> kafkaTemplate(ProducerFactory<String, byte[]> pf) {
    return new KafkaTemplate<>(pf);
  }

  @Bean
  public KafkaAdmin kafkaAdmin() {
    return new KafkaAdmin(Map.of("bootstrap.servers", System.getProperty("bench.brokers")));
  }

  @Bean
  public TaskScheduler taskScheduler() {
    return new ThreadPoolTaskScheduler();
  }

  @Bean
  public Listener listener() {
    return new Listener();
  }

  /** The handler under test. */
  public static class Listener {
    @RetryableTopic(
        attempts = "2",
        backOff = @BackOff(delayString = "${bench.retryMs}"),
        numPartitions = "${bench.partitions}",
        replicationFactor = "1",
        // Spring names retry topics after the main topic only; a suffix per run (the group) keeps
        // each run from reading an earlier run's retries, as whippet's "<topic>-<group>-retry-1" does.
        retryTopicSuffix = "-retry-${bench.group}",
        dltTopicSuffix = "-dlt-${bench.group}",
        sameIntervalTopicReuseStrategy = SameIntervalTopicReuseStrategy.SINGLE_TOPIC)
    @KafkaListener(topics = "${bench.topic}", groupId = "${bench.group}")
    public void on(ConsumerRecord<String, byte[]> r) {
      long now = System.nanoTime();
      first.compareAndSet(0, now);
      String key = r.key();
      if (key.charAt(0) == 'f' && r.topic().equals(System.getProperty("bench.topic"))) {
        failedAt.putIfAbsent(key, now);
        throw new IllegalStateException("fails on its first attempt");
      }
      if (finish(key, now) && key.charAt(0) == 'f') {
        Long f = failedAt.get(key);
        if (f != null) {
          lateness.add(now - (f + retryNanos));
        }
      }
    }

    @DltHandler
    public void dead(ConsumerRecord<String, byte[]> r) {
      if (finish(r.key(), System.nanoTime())) {
        dlt.incrementAndGet();
      }
    }

    /** Counts key's first success (a redelivery counts once); false if it was handled before. */
    private static boolean finish(String key, long now) {
      if (!handled.add(key)) {
        return false;
      }
      last.accumulateAndGet(now, Math::max);
      if (ok.incrementAndGet() == records) {
        done.countDown();
      }
      return true;
    }
  }
}
