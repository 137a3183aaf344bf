//! The two key-value interfaces a Spin host gives a component, over [`Db`]:
//! `spin:key-value/key-value@3.0.0` (async) and `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2`
//! (sync; the compare-and-swap edgefarm uses).

use wasmtime::component::{Accessor, FutureReader, HasData, Resource, ResourceTable, StreamReader};

use crate::kv::Db;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "test:host/host",
        with: {
            "spin:key-value/key-value.store": super::OpenStore,
            "wasi:keyvalue/store.bucket": super::OpenStore,
            "wasi:keyvalue/atomics.cas": super::CasHandle,
        },
    });
}
pub use bindings::spin::key_value::key_value as spin_kv;
pub use bindings::wasi::keyvalue::{atomics, batch, store as wasi_store};

/// An open store (Spin) or bucket (wasi): its label.
pub struct OpenStore {
    label: String,
}

/// A compare-and-swap handle: the key and the value `current()` last read.
pub struct CasHandle {
    label: String,
    key: String,
    seen: Option<Vec<u8>>,
}

/// What a request may use: the database and the labels spin.toml grants.
pub struct Kv {
    pub db: Db,
    pub allowed: Vec<String>,
}

/// The view the generated host traits work on.
pub struct KvView<'a> {
    pub kv: &'a Kv,
    pub table: &'a mut ResourceTable,
}

pub struct KvData;
impl HasData for KvData {
    type Data<'a> = KvView<'a>;
}

impl KvView<'_> {
    fn label(&self, rep: u32) -> Option<String> {
        self.table
            .get(&Resource::<OpenStore>::new_borrow(rep))
            .ok()
            .map(|s| s.label.clone())
    }
}

// ---- spin:key-value/key-value@3.0.0 ----

impl spin_kv::Host for KvView<'_> {}
impl spin_kv::HostStore for KvView<'_> {
    fn drop(&mut self, rep: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

fn spin_open<T>(
    acc: &Accessor<T, KvData>,
    s: &Resource<OpenStore>,
) -> Result<(Db, String), spin_kv::Error> {
    acc.with(|mut a| {
        let v = a.get();
        let label = v.label(s.rep()).ok_or(spin_kv::Error::NoSuchStore)?;
        Ok((v.kv.db.clone(), label))
    })
}

fn spin_err(e: String) -> spin_kv::Error {
    spin_kv::Error::Other(e)
}

impl<T> spin_kv::HostStoreWithStore<T> for KvData {
    async fn open(
        acc: &Accessor<T, Self>,
        label: String,
    ) -> Result<Resource<OpenStore>, spin_kv::Error> {
        acc.with(|mut a| {
            let v = a.get();
            if !v.kv.allowed.contains(&label) {
                return Err(spin_kv::Error::AccessDenied);
            }
            v.table
                .push(OpenStore { label })
                .map_err(|_| spin_kv::Error::StoreTableFull)
        })
    }
    async fn get(
        acc: &Accessor<T, Self>,
        s: Resource<OpenStore>,
        key: String,
    ) -> Result<Option<Vec<u8>>, spin_kv::Error> {
        let (db, label) = spin_open(acc, &s)?;
        db.get(&label, &key).map_err(spin_err)
    }
    async fn set(
        acc: &Accessor<T, Self>,
        s: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), spin_kv::Error> {
        let (db, label) = spin_open(acc, &s)?;
        db.set(&label, &key, &value).map_err(spin_err)
    }
    async fn delete(
        acc: &Accessor<T, Self>,
        s: Resource<OpenStore>,
        key: String,
    ) -> Result<(), spin_kv::Error> {
        let (db, label) = spin_open(acc, &s)?;
        db.delete(&label, &key).map_err(spin_err)
    }
    async fn exists(
        acc: &Accessor<T, Self>,
        s: Resource<OpenStore>,
        key: String,
    ) -> Result<bool, spin_kv::Error> {
        let (db, label) = spin_open(acc, &s)?;
        db.get(&label, &key).map(|v| v.is_some()).map_err(spin_err)
    }
    async fn get_keys(
        acc: &Accessor<T, Self>,
        s: Resource<OpenStore>,
    ) -> (
        StreamReader<String>,
        FutureReader<Result<(), spin_kv::Error>>,
    ) {
        let listed = spin_open(acc, &s).and_then(|(db, label)| db.keys(&label).map_err(spin_err));
        let (keys, result) = match listed {
            Ok(k) => (k, Ok(())),
            Err(e) => (Vec::new(), Err(e)),
        };
        acc.with(|mut a| {
            // Both only fail when the instance is gone, and then nobody reads them.
            let k = StreamReader::new(&mut a, keys).expect("stream for get-keys");
            let r = FutureReader::new(&mut a, async move { Ok::<_, wasmtime::Error>(result) })
                .expect("future for get-keys");
            (k, r)
        })
    }
}

// ---- wasi:keyvalue@0.2.0-draft2 ----

fn wasi_err(e: String) -> wasi_store::Error {
    wasi_store::Error::Other(e)
}

fn bucket(v: &KvView<'_>, b: &Resource<OpenStore>) -> Result<String, wasi_store::Error> {
    v.label(b.rep()).ok_or(wasi_store::Error::NoSuchStore)
}

impl wasi_store::Host for KvView<'_> {
    fn open(&mut self, identifier: String) -> Result<Resource<OpenStore>, wasi_store::Error> {
        if !self.kv.allowed.contains(&identifier) {
            return Err(wasi_store::Error::AccessDenied);
        }
        self.table
            .push(OpenStore { label: identifier })
            .map_err(|e| wasi_err(e.to_string()))
    }
}

impl wasi_store::HostBucket for KvView<'_> {
    fn get(
        &mut self,
        b: Resource<OpenStore>,
        key: String,
    ) -> Result<Option<Vec<u8>>, wasi_store::Error> {
        let l = bucket(self, &b)?;
        self.kv.db.get(&l, &key).map_err(wasi_err)
    }
    fn set(
        &mut self,
        b: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), wasi_store::Error> {
        let l = bucket(self, &b)?;
        self.kv.db.set(&l, &key, &value).map_err(wasi_err)
    }
    fn delete(&mut self, b: Resource<OpenStore>, key: String) -> Result<(), wasi_store::Error> {
        let l = bucket(self, &b)?;
        self.kv.db.delete(&l, &key).map_err(wasi_err)
    }
    fn exists(&mut self, b: Resource<OpenStore>, key: String) -> Result<bool, wasi_store::Error> {
        let l = bucket(self, &b)?;
        self.kv
            .db
            .get(&l, &key)
            .map(|v| v.is_some())
            .map_err(wasi_err)
    }
    fn list_keys(
        &mut self,
        b: Resource<OpenStore>,
        _cursor: Option<String>,
    ) -> Result<wasi_store::KeyResponse, wasi_store::Error> {
        let l = bucket(self, &b)?;
        let keys = self.kv.db.keys(&l).map_err(wasi_err)?;
        Ok(wasi_store::KeyResponse { keys, cursor: None })
    }
    fn drop(&mut self, rep: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    fn increment(
        &mut self,
        b: Resource<OpenStore>,
        key: String,
        delta: i64,
    ) -> Result<i64, wasi_store::Error> {
        let l = bucket(self, &b)?;
        self.kv.db.increment(&l, &key, delta).map_err(wasi_err)
    }
    fn swap(&mut self, cas: Resource<CasHandle>, value: Vec<u8>) -> Result<(), atomics::CasError> {
        let store_err = |e: String| atomics::CasError::StoreError(wasi_err(e));
        let h = self
            .table
            .delete(cas)
            .map_err(|e| store_err(e.to_string()))?;
        if self
            .kv
            .db
            .swap(&h.label, &h.key, h.seen.as_deref(), &value)
            .map_err(store_err)?
        {
            return Ok(());
        }
        // Like Spin: a failed swap hands the handle back; it compares with the old read until
        // `current()` is called again.
        let retry = self.table.push(h).map_err(|e| store_err(e.to_string()))?;
        Err(atomics::CasError::CasFailed(retry))
    }
}

impl atomics::HostCas for KvView<'_> {
    fn new(
        &mut self,
        b: Resource<OpenStore>,
        key: String,
    ) -> Result<Resource<CasHandle>, wasi_store::Error> {
        let label = bucket(self, &b)?;
        self.table
            .push(CasHandle {
                label,
                key,
                seen: None,
            })
            .map_err(|e| wasi_err(e.to_string()))
    }
    fn current(&mut self, c: Resource<CasHandle>) -> Result<Option<Vec<u8>>, wasi_store::Error> {
        let db = self.kv.db.clone();
        let h = self
            .table
            .get_mut(&c)
            .map_err(|e| wasi_err(e.to_string()))?;
        h.seen = db.get(&h.label, &h.key).map_err(wasi_err)?;
        Ok(h.seen.clone())
    }
    fn drop(&mut self, rep: Resource<CasHandle>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl batch::Host for KvView<'_> {
    fn get_many(
        &mut self,
        b: Resource<OpenStore>,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, wasi_store::Error> {
        let l = bucket(self, &b)?;
        keys.into_iter()
            .map(|k| {
                let v = self.kv.db.get(&l, &k).map_err(wasi_err)?;
                Ok((k, v))
            })
            .collect()
    }
    fn set_many(
        &mut self,
        b: Resource<OpenStore>,
        kvs: Vec<(String, Vec<u8>)>,
    ) -> Result<(), wasi_store::Error> {
        let l = bucket(self, &b)?;
        kvs.iter()
            .try_for_each(|(k, v)| self.kv.db.set(&l, k, v))
            .map_err(wasi_err)
    }
    fn delete_many(
        &mut self,
        b: Resource<OpenStore>,
        keys: Vec<String>,
    ) -> Result<(), wasi_store::Error> {
        let l = bucket(self, &b)?;
        keys.iter()
            .try_for_each(|k| self.kv.db.delete(&l, k))
            .map_err(wasi_err)
    }
}
