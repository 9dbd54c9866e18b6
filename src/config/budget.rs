//! The alias budget of a config: YAML aliases repeat their anchor's whole value, and
//! the parser bounds alias *jumps*, not bytes, so a small file can expand into
//! gigabytes. Every value is charged to a budget on its way into the typed config.

use std::cell::Cell;

use serde::Deserialize;

/// How much the values of a config may add up to once every alias is replaced by
/// what its anchor holds: each string's bytes plus [`NODE_COST`] per value.
///
/// The YAML parser bounds alias *jumps*, not bytes, so one 1 MB string aliased a
/// thousand times would become a gigabyte of `String`s. 8 MiB is out of reach of any
/// file under [`super::MAX_CONFIG_BYTES`] written without aliases (a value comes to at most
/// 1.5 bytes per source byte through escapes, and each node takes at least two source
/// bytes: 1.5 MiB + 512 Ki × 8 ≈ 5.5 MiB), so only aliases can hit it, and it keeps
/// what the parsed config holds when it is hit in the tens of megabytes.
pub(super) const EXPANSION_BUDGET: usize = 8 << 20;

/// What each value (string, number, list, map, null) costs against
/// [`EXPANSION_BUDGET`] on top of its bytes, so that aliased lists of short or empty
/// strings are bounded too.
const NODE_COST: usize = 8;

/// Why a config did not deserialize.
pub(super) enum Failure {
    /// Its aliases expand past [`EXPANSION_BUDGET`].
    Expansion,
    Yaml(yaml_serde::Error),
}

/// Deserializes `text`, failing once its values (aliases expanded) pass the budget.
pub(super) fn deserialize<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, Failure> {
    let budget = Budget::new(EXPANSION_BUDGET);
    T::deserialize(Budgeted {
        de: yaml_serde::Deserializer::from_str(text),
        budget: &budget,
    })
    .map_err(|e| {
        // The parser's own guard against alias loops ("repetition limit exceeded")
        // is the same attack seen from the other side.
        if budget.exceeded.get() || e.to_string().contains("repetition limit exceeded") {
            Failure::Expansion
        } else {
            Failure::Yaml(e)
        }
    })
}

/// What is left of [`EXPANSION_BUDGET`] while one config is deserialized.
struct Budget {
    left: Cell<usize>,
    exceeded: Cell<bool>,
}

impl Budget {
    fn new(bytes: usize) -> Self {
        Budget {
            left: Cell::new(bytes),
            exceeded: Cell::new(false),
        }
    }

    /// Takes one value of `bytes` off the budget, or fails once it is spent.
    fn charge<E: serde::de::Error>(&self, bytes: usize) -> Result<(), E> {
        match self.left.get().checked_sub(bytes.saturating_add(NODE_COST)) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.exceeded.set(true);
                Err(E::custom("aliases expand the config past its size budget"))
            }
        }
    }
}

/// Deserializes through `de`, charging every value to `budget` before the visitor
/// that would copy it sees it.
///
/// Charging on the way into the typed config, rather than in a separate walk of the
/// document, counts exactly the bytes the config would hold: a walk with
/// `deserialize_any` is handed a scalar such as `0x000…0001` (a megabyte of zeros) as
/// the number 1, while a `String` field receives all of its text.
struct Budgeted<'b, D> {
    de: D,
    budget: &'b Budget,
}

/// A visitor, seed or access wrapped so that what passes through it is charged.
struct Charged<'b, T> {
    inner: T,
    budget: &'b Budget,
}

impl<'b, T> Charged<'b, T> {
    fn wrap<U>(&self, inner: U) -> Charged<'b, U> {
        Charged {
            inner,
            budget: self.budget,
        }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: serde::de::Visitor<'de>>(
            self,
            $($arg: $ty,)*
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            let visitor = Charged { inner: visitor, budget: self.budget };
            self.de.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: serde::Deserializer<'de>> serde::Deserializer<'de> for Budgeted<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// Visitor methods that charge a value of `bytes(&v)` bytes, then hand it on.
macro_rules! charge_and_visit {
    ($($method:ident($ty:ty) => $bytes:expr;)*) => {$(
        fn $method<E: serde::de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            let bytes: fn(&$ty) -> usize = $bytes;
            self.budget.charge(bytes(&v))?;
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: serde::de::Visitor<'de>> serde::de::Visitor<'de> for Charged<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.inner.expecting(f)
    }

    charge_and_visit! {
        visit_bool(bool) => |_| 0;
        visit_i8(i8) => |_| 0;
        visit_i16(i16) => |_| 0;
        visit_i32(i32) => |_| 0;
        visit_i64(i64) => |_| 0;
        visit_i128(i128) => |_| 0;
        visit_u8(u8) => |_| 0;
        visit_u16(u16) => |_| 0;
        visit_u32(u32) => |_| 0;
        visit_u64(u64) => |_| 0;
        visit_u128(u128) => |_| 0;
        visit_f32(f32) => |_| 0;
        visit_f64(f64) => |_| 0;
        visit_char(char) => |c| c.len_utf8();
        visit_str(&str) => |s| s.len();
        visit_borrowed_str(&'de str) => |s| s.len();
        visit_string(String) => |s| s.len();
        visit_bytes(&[u8]) => |b| b.len();
        visit_borrowed_bytes(&'de [u8]) => |b| b.len();
        visit_byte_buf(Vec<u8>) => |b| b.len();
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.budget.charge(0)?;
        self.inner.visit_none()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.budget.charge(0)?;
        self.inner.visit_unit()
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        self.budget.charge(0)?;
        let budget = self.budget;
        self.inner.visit_some(Budgeted { de, budget })
    }

    fn visit_newtype_struct<D: serde::Deserializer<'de>>(
        self,
        de: D,
    ) -> Result<Self::Value, D::Error> {
        self.budget.charge(0)?;
        let budget = self.budget;
        self.inner.visit_newtype_struct(Budgeted { de, budget })
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.budget.charge(0)?;
        let seq = self.wrap(seq);
        self.inner.visit_seq(seq)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.budget.charge(0)?;
        let map = self.wrap(map);
        self.inner.visit_map(map)
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.budget.charge(0)?;
        let data = self.wrap(data);
        self.inner.visit_enum(data)
    }
}

impl<'de, S: serde::de::DeserializeSeed<'de>> serde::de::DeserializeSeed<'de> for Charged<'_, S> {
    type Value = S::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        let budget = self.budget;
        self.inner.deserialize(Budgeted { de, budget })
    }
}

impl<'de, A: serde::de::SeqAccess<'de>> serde::de::SeqAccess<'de> for Charged<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let seed = self.wrap(seed);
        self.inner.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: serde::de::MapAccess<'de>> serde::de::MapAccess<'de> for Charged<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let seed = self.wrap(seed);
        self.inner.next_key_seed(seed)
    }

    fn next_value_seed<T: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, A::Error> {
        let seed = self.wrap(seed);
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'b, 'de, A: serde::de::EnumAccess<'de>> serde::de::EnumAccess<'de> for Charged<'b, A> {
    type Error = A::Error;
    type Variant = Charged<'b, A::Variant>;

    fn variant_seed<T: serde::de::DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let seed = self.wrap(seed);
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((
            value,
            Charged {
                inner: variant,
                budget: self.budget,
            },
        ))
    }
}

impl<'de, A: serde::de::VariantAccess<'de>> serde::de::VariantAccess<'de> for Charged<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: serde::de::DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, A::Error> {
        let seed = self.wrap(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: serde::de::Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = self.wrap(visitor);
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: serde::de::Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = self.wrap(visitor);
        self.inner.struct_variant(fields, visitor)
    }
}
