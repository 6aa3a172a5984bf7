//! An upgrade from the first topology (work queues without a delivery limit, classic retry
//! queues): the new processes start on a broker that still has the old queues, the jobs whose
//! messages only the old queues hold still finish, and the old queues are drained and deleted.

use std::time::Duration;

use kiln_tests::{Options, Process, TestApp, images, spawn_app_with};
use lapin::{
    ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions},
    types::{AMQPValue, FieldTable, LongString},
};

#[tokio::test]
async fn jobs_in_the_first_topologys_queues_finish_and_those_queues_are_retired() {
    // No rescue within the test: only the move out of the old queue can finish these jobs.
    let mut app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default().env("KILN_RESCUE_AFTER", "1h")
    })
    .await;
    let name = app.services.name.clone();
    declare_first_topology(&app).await;

    let ids = app.upload_small(5).await;
    // The old queue is still bound, so it holds a copy of each message; leave it the only one.
    let (connection, channel) = app.amqp_channel().await;
    let old_media = format!("{name}.media");
    let new_media = app.queue_name("media");
    let purged = channel
        .queue_purge(new_media.as_str().into(), QueuePurgeOptions::default())
        .await
        .expect("purge");
    assert_eq!(purged, 5);
    connection.close(200, "done".into()).await.ok();
    assert_eq!(depth(&app, &old_media).await, Some(5));

    app.worker = Some(Process::spawn("kiln-worker", &[], app.env()).expect("worker"));
    let scheduler = Process::spawn("kiln-scheduler", &[], app.env()).expect("scheduler");
    for id in &ids {
        assert_eq!(app.wait_for_media(id).await["status"], "ready", "{id}");
    }

    let old_queues = [
        old_media,
        format!("{name}.email"),
        format!("{name}.backup"),
        format!("{name}.maintenance"),
        format!("{name}.delay.300ms"),
        format!("{name}.delay.1000ms"),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    for queue in &old_queues {
        while depth(&app, queue).await.is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{queue} was never retired; scheduler output:\n{}",
                scheduler.logs().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let recorded: Vec<String> = sqlx::query_scalar("SELECT name FROM broker_queues ORDER BY name")
        .fetch_all(&app.services.db().await)
        .await
        .expect("broker_queues");
    let mut expected: Vec<String> = app
        .services
        .topology()
        .declared()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    expected.sort();
    assert_eq!(recorded, expected);

    // New messages reach only the new queues, and are processed.
    let answer = app.upload(images::sideways_jpeg(64, 32)).await;
    let id = answer.body["id"].as_str().expect("id");
    assert_eq!(app.wait_for_media(id).await["status"], "ready");
    println!("5 jobs held only by the first topology's queues: 5 ready; 6 old queues retired");
}

/// The topology every process declared before queue names carried their arguments.
async fn declare_first_topology(app: &TestApp) {
    let name = &app.services.name;
    let (connection, channel) = app.amqp_channel().await;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    let jobs = format!("{name}.jobs");
    let dead = format!("{name}.dead");
    channel
        .exchange_declare(
            jobs.as_str().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await
        .expect("jobs exchange");
    channel
        .exchange_declare(
            dead.as_str().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await
        .expect("dead exchange");
    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), text("quorum"));
    channel
        .queue_declare(
            dead.as_str().into(),
            QueueDeclareOptions::durable(),
            quorum.clone(),
        )
        .await
        .expect("dead queue");
    channel
        .queue_bind(
            dead.as_str().into(),
            dead.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("dead binding");
    for ms in [300, 1000] {
        let delay = format!("{name}.delay.{ms}ms");
        channel
            .exchange_declare(
                delay.as_str().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await
            .expect("delay exchange");
        let mut arguments = FieldTable::default();
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms));
        arguments.insert("x-dead-letter-exchange".into(), text(&jobs));
        channel
            .queue_declare(
                delay.as_str().into(),
                QueueDeclareOptions::durable(),
                arguments,
            )
            .await
            .expect("delay queue");
        channel
            .queue_bind(
                delay.as_str().into(),
                delay.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("delay binding");
    }
    let mut work = quorum;
    work.insert("x-dead-letter-exchange".into(), text(&dead));
    for (queue, kinds) in [
        ("media", &["media"][..]),
        ("email", &["email"][..]),
        ("backup", &["backup"][..]),
        ("maintenance", &["cleanup", "digest", "prune", "noop"][..]),
    ] {
        let queue = format!("{name}.{queue}");
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                work.clone(),
            )
            .await
            .expect("work queue");
        for kind in kinds {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    jobs.as_str().into(),
                    (*kind).into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("work binding");
        }
    }
    connection.close(200, "done".into()).await.ok();
}

/// A queue's ready messages, or `None` if it does not exist.
async fn depth(app: &TestApp, queue: &str) -> Option<u32> {
    let (connection, channel) = app.amqp_channel().await;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    connection.close(200, "done".into()).await.ok();
    declared.ok().map(|q| q.message_count())
}

#[tokio::test]
async fn a_new_delivery_limit_declares_new_queues_and_retires_the_old_ones() {
    // Messages wait in the queues of limit 20; then every process restarts with a limit of 10.
    let mut app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default()
            .env("KILN_RESCUE_AFTER", "1h")
            .env("KILN_RETIRE_AFTER", "1s")
    })
    .await;
    let ids = app.upload_small(3).await;
    let old_media = app.queue_name("media");
    assert_eq!(depth(&app, &old_media).await, Some(3));
    // The queues of limit 20 are recorded as declared, as a scheduler of the old configuration
    // would have left them.
    let old_scheduler = Process::spawn("kiln-scheduler", &[], app.env()).expect("scheduler");
    let db = app.services.db().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let recorded: i64 =
            sqlx::query_scalar("SELECT count(*) FROM broker_queues WHERE name = $1")
                .bind(&old_media)
                .fetch_one(&db)
                .await
                .expect("broker_queues");
        if recorded == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(old_scheduler);

    let mut env = app.env().clone();
    env.insert("KILN_DELIVERY_LIMIT".into(), "10".into());
    app.services.delivery_limit = 10;
    let worker = Process::spawn("kiln-worker", &[], &env).expect("worker");
    worker
        .wait_for_log("consuming")
        .await
        .expect("the worker starts");
    let scheduler = Process::spawn("kiln-scheduler", &[], &env).expect("scheduler");
    app.worker = Some(worker);
    for id in &ids {
        assert_eq!(app.wait_for_media(id).await["status"], "ready", "{id}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while depth(&app, &old_media).await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{old_media} was never retired; scheduler output:\n{}",
            scheduler.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        app.queue_name("media"),
        format!("{}.media.dl10", app.services.name)
    );
    println!("3 jobs queued under a delivery limit of 20, processed under 10; old queue retired");
}
