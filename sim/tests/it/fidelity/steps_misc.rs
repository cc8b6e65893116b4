//! The sequence's host part: cluster and node reads driver's preflight and nested hosts make
//! (`/cluster/status`, `/access/permissions`, storages, network, `aplinfo`), `nextid` with a
//! floor, an API token made and removed (a nested host's), an upload and `download-url`'s
//! refusals.

use super::sequence::{call, get, task, task_log, Step};

pub fn steps() -> Vec<Step> {
    vec![
        get("cluster status", "/cluster/status"),
        get("permissions", "/access/permissions"),
        get("all storages", "/nodes/{node}/storage"),
        get("local status", "/nodes/{node}/storage/local/status"),
        get("lvm status", "/nodes/{node}/storage/local-lvm/status"),
        get("all networks", "/nodes/{node}/network"),
        get("aplinfo", "/nodes/{node}/aplinfo"),
        get("nextid taken", "/cluster/nextid?vmid=9000"),
        get("nextid free", "/cluster/nextid?vmid=180"),
        get("nextid low", "/cluster/nextid?vmid=5"),
        call(
            "token add",
            "POST",
            "/access/users/root@pam/token/fidchild",
            &[("privsep", "0"), ("comment", "fid")],
        ),
        call(
            "token delete",
            "DELETE",
            "/access/users/root@pam/token/fidchild",
            &[],
        ),
        // `UPLOAD`: a multipart upload of a small file, as driver's client sends it.
        call(
            "upload",
            "UPLOAD",
            "/nodes/{node}/storage/local/upload",
            &[
                ("content", "vztmpl"),
                ("filename", "fid-test_1.0_amd64.tar.zst"),
            ],
        ),
        task("upload task"),
        task_log("upload log"),
        get(
            "vztmpl content",
            "/nodes/{node}/storage/local/content?content=vztmpl",
        ),
        call(
            "upload bad content",
            "UPLOAD",
            "/nodes/{node}/storage/local/upload",
            &[("content", "images"), ("filename", "fid.raw")],
        ),
        call(
            "download no url",
            "POST",
            "/nodes/{node}/storage/local/download-url",
            &[("content", "iso"), ("filename", "fid.iso")],
        ),
        call(
            "download bad content",
            "POST",
            "/nodes/{node}/storage/local/download-url",
            &[
                ("content", "images"),
                ("filename", "fid.raw"),
                ("url", "http://127.0.0.1:9/fid.raw"),
            ],
        ),
        call(
            "download to lvm",
            "POST",
            "/nodes/{node}/storage/local-lvm/download-url",
            &[
                ("content", "iso"),
                ("filename", "fid.iso"),
                ("url", "http://127.0.0.1:9/fid.iso"),
            ],
        ),
        get("iso content", CONTENT_ISO),
    ]
}

const CONTENT_ISO: &str = "/nodes/{node}/storage/local/content?content=iso";
