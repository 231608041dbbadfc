//! Shared pieces of PiCloud's benchmarks: the benchmark scripts and the
//! native Rhai reference they are compared with. See `docs/benchmarks.md`.

use picloud_executor_core::{Request, RequestFields, RhaiLimits, request_fields};
use rhai::grain::{Compiler, SharedProgram, Vm};
use rhai::{Dynamic, Engine, Map, Scope};

/// The scripts every executor benchmark runs, by name.
pub const SCRIPTS: &[(&str, &str)] = &[
    ("hello", r#""Hello, world!""#),
    (
        "json_transform",
        r#"
        let order = #{ id: 42, items: [#{ sku: "a", qty: 2, price: 3.5 }, #{ sku: "b", qty: 1, price: 10.0 }], customer: #{ name: "Pi" } };
        let total = 0.0;
        for item in order.items { total += item.qty * item.price; }
        #{ id: order.id, customer: order.customer.name, total: total, count: order.items.len() }
        "#,
    ),
    (
        "loop_10k",
        "let sum = 0;\nfor i in 0..10000 { sum += i; }\nsum",
    ),
    (
        "fib_20",
        "fn fib(n) { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }\nfib(20)",
    ),
    // Hello world from a script that reads the request, so that both
    // sides build the `request` map.
    ("hello_request", r#"`Hello, ${request.query.name}!`"#),
];

/// A typical small GET request.
pub fn sample_request() -> Request {
    Request {
        method: "GET".into(),
        path: "/bench/script".into(),
        subpath: String::new(),
        query: vec![("name".into(), "pi".into())],
        headers: vec![
            ("user-agent".into(), "bench".into()),
            ("accept".into(), "*/*".into()),
        ],
        body: Vec::new(),
        request_id: "bench".into(),
    }
}

/// Native Rhai doing the same work per request as the guest: build the
/// `request` constant in a fresh scope (when the script may read it, the
/// guest's rule: [`request_fields`]), evaluate the compiled script, and
/// render the result (text or JSON).
pub struct NativeReference {
    engine: Engine,
    evaluator: Evaluator,
    request_fields: RequestFields,
}

/// How native Rhai evaluates the script.
enum Evaluator {
    /// Rhai's tree-walking interpreter: stock Rhai as script authors know it.
    Ast(rhai::AST),
    /// Rhai Grain's bytecode VM, as the guest runs scripts.
    Grain {
        program: SharedProgram,
        makes_fn_pointers: bool,
    },
}

impl NativeReference {
    /// Compiles `source` with the guest's default limits, for Rhai's
    /// tree-walking interpreter.
    pub fn new(source: &str) -> NativeReference {
        let (engine, ast) = Self::compile(source);
        NativeReference {
            engine,
            evaluator: Evaluator::Ast(ast),
            request_fields: request_fields(source),
        }
    }

    /// Compiles `source` with the guest's default limits and lowers it to
    /// bytecode for Rhai Grain's VM, as the guest does.
    pub fn grain(source: &str) -> NativeReference {
        let (engine, ast) = Self::compile(source);
        let program = Compiler::new().compile(&ast);
        NativeReference {
            engine,
            evaluator: Evaluator::Grain {
                makes_fn_pointers: program.makes_fn_pointers(),
                program: program.into_shared(),
            },
            request_fields: request_fields(source),
        }
    }

    fn compile(source: &str) -> (Engine, rhai::AST) {
        let limits = RhaiLimits::default();
        let mut engine = Engine::new();
        engine
            .set_max_call_levels(limits.max_call_levels as usize)
            .set_max_expr_depths(
                limits.max_expr_depth as usize,
                limits.max_function_expr_depth as usize,
            )
            .set_max_string_size(limits.max_string_size as usize)
            .set_max_array_size(limits.max_array_size as usize)
            .set_max_map_size(limits.max_map_size as usize)
            .set_max_variables(limits.max_variables as usize)
            .set_max_functions(limits.max_functions as usize);
        let ast = engine.compile(source).expect("benchmark scripts compile");
        (engine, ast)
    }

    /// Handles one request; returns the body bytes.
    pub fn handle(&self, request: &Request) -> Vec<u8> {
        let mut scope = Scope::new();
        if !self.request_fields.is_empty() {
            scope.push_constant("request", request_map(request, self.request_fields));
        }
        let value: Dynamic = match &self.evaluator {
            Evaluator::Ast(ast) => self.engine.eval_ast_with_scope(&mut scope, ast),
            Evaluator::Grain {
                program,
                makes_fn_pointers: true,
            } => Vm::new(&self.engine).eval_with_callbacks(&mut scope, program),
            Evaluator::Grain { program, .. } => {
                Vm::new(&self.engine).eval_with_scope(&mut scope, program)
            }
        }
        .expect("benchmark scripts run");
        if value.is_string() {
            value.into_string().unwrap().into_bytes()
        } else {
            serde_json::to_vec(&value).unwrap()
        }
    }
}

/// The `request` constant the guest builds (`guest/src/convert.rs`), with
/// the parts the script names.
fn request_map(request: &Request, fields: RequestFields) -> Dynamic {
    let mut map = Map::new();
    let mut add = |part: RequestFields, key: &str, value: &dyn Fn() -> Dynamic| {
        if fields.contains(part) {
            map.insert(key.into(), value());
        }
    };
    add(RequestFields::METHOD, "method", &|| {
        request.method.clone().into()
    });
    add(RequestFields::PATH, "path", &|| request.path.clone().into());
    add(RequestFields::SUBPATH, "subpath", &|| {
        request.subpath.clone().into()
    });
    add(RequestFields::QUERY, "query", &|| {
        let mut query = Map::new();
        for (name, value) in &request.query {
            query.insert(name.into(), value.clone().into());
        }
        query.into()
    });
    add(RequestFields::HEADERS, "headers", &|| {
        let mut headers = Map::new();
        for (name, value) in &request.headers {
            headers.insert(name.into(), value.clone().into());
        }
        headers.into()
    });
    add(RequestFields::BODY, "body", &|| {
        String::from_utf8_lossy(&request.body).into_owned().into()
    });
    add(RequestFields::ID, "id", &|| {
        request.request_id.clone().into()
    });
    Dynamic::from_map(map)
}

/// Resident set size of this process in bytes (Linux, from /proc).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The script of the JSON endpoint in `benches/http-load.sh`: parse a 1 KB
/// order, read a nested field, answer a small JSON object.
pub const JSON_ORDER_SCRIPT: &str = "let order = json_parse(request.body); \
    #{ city: order.customer.address.city, items: order.items.len(), ok: true }";

/// The request `benches/http-load.sh` sends to its JSON endpoint, as the
/// ingress hands it to the executor: a POST with wrk's headers and a 1 KB
/// order as the body.
pub fn json_order_request() -> Request {
    let items: Vec<serde_json::Value> = (0..6)
        .map(|i| {
            serde_json::json!({
                "sku": format!("SKU-{i:04}"), "name": format!("Item number {i}"),
                "quantity": i % 3 + 1, "price_cents": 199 + i * 25, "tags": ["tea", "green"],
            })
        })
        .collect();
    let mut order = serde_json::json!({
        "id": "ord_1234567890",
        "customer": {"id": 42, "name": "Ada Lovelace", "email": "ada@example.com",
            "address": {"street": "12 Analytical Way", "city": "London",
                "postcode": "N1 9GU", "country": "GB"}},
        "items": items,
        "notes": "Leave at the door, please.",
        "created_at": "2026-11-30T08:00:00Z",
    });
    let unpadded = serde_json::to_string(&order).unwrap().len();
    // `,"padding":""` is 13 bytes.
    order["padding"] = "x".repeat(1024 - unpadded - 13).into();
    let body = serde_json::to_vec(&order).unwrap();
    Request {
        method: "POST".into(),
        path: "/bench/order".into(),
        subpath: String::new(),
        query: Vec::new(),
        headers: vec![
            ("host".into(), "127.0.0.1:18080".into()),
            ("content-length".into(), body.len().to_string()),
            ("content-type".into(), "application/json".into()),
        ],
        body,
        request_id: "bench".into(),
    }
}
