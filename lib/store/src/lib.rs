//! stub
#[cfg(test)]
mod tests {
    #[test]
    fn version() {
        let c = duckdb::Connection::open_in_memory().unwrap();
        let v: String = c.query_row("select version()", [], |r| r.get(0)).unwrap();
        assert_eq!(v, "v1.5.6");
        for sql in [
            "select count() from range(3)",
            "select epoch_ns(make_timestamp_ns(1794700800000000001::BIGINT))::VARCHAR",
            "select ((1,2) IN (select 1, 2))::VARCHAR",
            "select extension_name || ':' || loaded::VARCHAR || installed::VARCHAR from duckdb_extensions() where loaded or installed",
            "select CAST('{\"a\":\"b\"}'::JSON AS MAP(VARCHAR,VARCHAR))::VARCHAR",
        ] {
            let r: Result<Vec<String>, _> = c.prepare(sql).and_then(|mut s| s.query_map([], |r| r.get::<_, duckdb::types::Value>(0).map(|v| format!("{v:?}"))).and_then(|m| m.collect()));
            println!("{sql} => {r:?}");
        }
        let mut s = c.prepare("select * from range(10) limit ?").unwrap();
        let n = s.query_map([3i64], |r| r.get::<_, i64>(0)).unwrap().count();
        println!("limit ? => {n}");
    }
}
