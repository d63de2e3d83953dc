use super::*;
use std::io::Write;

const TIMING: PressTiming = PressTiming {
    hold: Duration::from_secs(10),
    debounce: Duration::from_millis(50),
};

async fn ms(n: u64) {
    tokio::time::sleep(Duration::from_millis(n)).await;
}

#[tokio::test(start_paused = true)]
async fn a_press_held_for_ten_seconds_is_long_the_moment_the_ten_seconds_are_up() {
    let (mut button, finger) = SimButton::new();
    let start = Instant::now();
    finger.press();
    let press = long_press(&mut button, TIMING).await.unwrap();
    assert_eq!(press, Press::Long);
    assert_eq!(start.elapsed(), TIMING.debounce + TIMING.hold);
}

#[tokio::test(start_paused = true)]
async fn a_press_released_before_the_hold_is_short_and_asks_for_nothing() {
    let (mut button, finger) = SimButton::new();
    let pressing = tokio::spawn(async move {
        finger.press();
        ms(9_000).await;
        finger.release();
        finger
    });
    let press = long_press(&mut button, TIMING).await.unwrap();
    assert_eq!(press, Press::Short(Duration::from_millis(9_000)));
    drop(pressing.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn bounces_shorter_than_the_debounce_neither_start_nor_end_a_press() {
    let (mut button, finger) = SimButton::new();
    let start = Instant::now();
    let pressing = tokio::spawn(async move {
        // Contact bounce on the way down: the press starts when it settles.
        for _ in 0..5 {
            finger.press();
            ms(10).await;
            finger.release();
            ms(10).await;
        }
        finger.press();
        // Bounces while held: each shorter than the debounce.
        for _ in 0..20 {
            ms(400).await;
            finger.release();
            ms(20).await;
            finger.press();
        }
        finger
    });
    let press = long_press(&mut button, TIMING).await.unwrap();
    assert_eq!(press, Press::Long);
    // 100 ms of bouncing, 50 ms to settle, then the 10 s hold.
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(100) + TIMING.debounce + TIMING.hold
    );
    drop(pressing.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_glitch_shorter_than_the_debounce_is_no_press_at_all() {
    let (mut button, finger) = SimButton::new();
    let pressing = tokio::spawn(async move {
        finger.press();
        ms(20).await;
        finger.release();
        ms(1_000).await;
        finger.press();
        ms(2_000).await;
        finger.release();
        finger
    });
    // The first press the detector sees is the 2 s one.
    let press = long_press(&mut button, TIMING).await.unwrap();
    assert_eq!(press, Press::Short(Duration::from_millis(2_000)));
    drop(pressing.await.unwrap());
}

/// One `struct input_event` record as the kernel writes it.
fn input_event(kind: u16, code: u16, value: i32) -> Vec<u8> {
    let mut record = vec![0u8; INPUT_EVENT_SIZE];
    let tail = INPUT_EVENT_SIZE - 8;
    record[tail..tail + 2].copy_from_slice(&kind.to_ne_bytes());
    record[tail + 2..tail + 4].copy_from_slice(&code.to_ne_bytes());
    record[tail + 4..].copy_from_slice(&value.to_ne_bytes());
    record
}

#[tokio::test]
async fn an_input_device_gives_the_presses_and_releases_of_its_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("event0");
    let mut f = std::fs::File::create(&path).unwrap();
    for record in [
        input_event(EV_KEY, 30, 1),          // another key
        input_event(0x00, 0, 0),             // EV_SYN
        input_event(EV_KEY, KEY_RESTART, 1), // down
        input_event(EV_KEY, KEY_RESTART, 2), // auto-repeat
        input_event(EV_KEY, KEY_RESTART, 0), // up
    ] {
        f.write_all(&record).unwrap();
    }
    f.write_all(&[1, 2, 3]).unwrap(); // a torn record at the end
    drop(f);
    let mut button = InputEventButton::open(&path, KEY_RESTART).await.unwrap();
    assert!(button.next_edge().await.unwrap());
    assert!(!button.next_edge().await.unwrap());
    let end = button.next_edge().await.unwrap_err();
    assert_eq!(end.kind, ResetButtonErrorKind::Closed, "{end}");
}

#[tokio::test]
async fn a_missing_device_or_chip_is_not_found() {
    let e = InputEventButton::open(Path::new("/nonexistent/event0"), KEY_RESTART)
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind, ResetButtonErrorKind::NotFound, "{e}");
    let e = GpioButton::open(Path::new("/nonexistent/gpiochip0"), 17, true)
        .err()
        .unwrap();
    assert_eq!(e.kind, ResetButtonErrorKind::NotFound, "{e}");
    let dir = tempfile::tempdir().unwrap();
    let not_a_chip = dir.path().join("gpiochip0");
    std::fs::write(&not_a_chip, b"").unwrap();
    let e = GpioButton::open(&not_a_chip, 17, true).err().unwrap();
    assert_eq!(e.kind, ResetButtonErrorKind::Unsupported, "{e}");
}
