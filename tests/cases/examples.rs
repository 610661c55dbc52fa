//! Every example in conf/ is valid, through the same code path as start-up.

#[test]
fn every_conf_example_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&p).unwrap();
            if let Err(e) = mcp_hub::config::parse(&text, &p) {
                panic!("{}: {:#?}", p.display(), e.issues());
            }
            n += 1;
        }
    }
    assert!(n >= 2, "expected conf/hub.toml and conf/demo.toml");
}

#[test]
fn the_demo_config_is_the_embedded_one() {
    let on_disk = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/demo.toml"),
    )
    .unwrap();
    assert_eq!(on_disk, mcp_hub::demo::DEMO_CONFIG);
}
