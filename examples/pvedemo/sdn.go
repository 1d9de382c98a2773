package pvedemo

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// sdnConfig is one view of the SDN configuration: section id → attributes.
// Values are stored as the strings the request carried (canonicalised by the
// schema); the schema types them again on output.
type sdnConfig struct {
	Zones   map[string]map[string]string `json:"zones"`
	Vnets   map[string]map[string]string `json:"vnets"`
	Subnets map[string]map[string]string `json:"subnets"`
}

// sdnState mirrors pve-network's split between the edited configuration
// (/etc/pve/sdn/*.cfg, "pending") and the applied one (.running-config).
// CRUD edits Pending; PUT /cluster/sdn copies it to Running.
type sdnState struct {
	Pending sdnConfig `json:"pending"`
	Running sdnConfig `json:"running"`
}

func (c *sdnConfig) init() {
	if c.Zones == nil {
		c.Zones = map[string]map[string]string{}
	}
	if c.Vnets == nil {
		c.Vnets = map[string]map[string]string{}
	}
	if c.Subnets == nil {
		c.Subnets = map[string]map[string]string{}
	}
}

func (c *sdnConfig) clone() sdnConfig {
	out := sdnConfig{}
	out.init()
	for _, p := range []struct{ dst, src map[string]map[string]string }{{out.Zones, c.Zones}, {out.Vnets, c.Vnets}, {out.Subnets, c.Subnets}} {
		for k, v := range p.src {
			p.dst[k] = maps.Clone(v)
		}
	}
	return out
}

func (c *sdnConfig) canonical() []byte {
	b, _ := json.Marshal(c) // maps marshal with sorted keys
	return b
}

// digest is what PVE calls the config digest: a SHA-1 of the config, sent
// back by clients to detect concurrent edits.
func (c *sdnConfig) digest() string {
	sum := sha1.Sum(c.canonical())
	return hex.EncodeToString(sum[:])
}

func (s *Server) loadSDN() (*sdnState, error) {
	data, _, ok, err := s.store.read(fileSDN)
	if err != nil {
		return nil, err
	}
	st := &sdnState{}
	if ok {
		if err := json.Unmarshal(data, st); err != nil {
			return nil, fmt.Errorf("%s: %w", fileSDN, err)
		}
	}
	st.Pending.init()
	st.Running.init()
	return st, nil
}

func (s *Server) saveSDN(st *sdnState) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode sdn state: %w", err)
	}
	return s.store.write(fileSDN, append(data, '\n'))
}

// withSDN runs fn under the SDN lock on a fresh read. For writers, the state
// is saved (and the write counted) only when fn changed it.
func (s *Server) withSDN(c *call, exclusive bool, fn func(*sdnState) (result, error)) (result, error) {
	unlock, err := s.store.lock(c.r.Context(), fileSDNLock, exclusive)
	if err != nil {
		return result{}, err
	}
	defer unlock()
	st, err := s.loadSDN()
	if err != nil {
		return result{}, err
	}
	before := string(st.Pending.canonical()) + string(st.Running.canonical())
	res, err := fn(st)
	if err != nil || !exclusive {
		return res, err
	}
	if string(st.Pending.canonical())+string(st.Running.canonical()) != before {
		if err := s.saveSDN(st); err != nil {
			return result{}, err
		}
		res.changed = true
	}
	return res, nil
}

// sdnKind describes one SDN collection.
type sdnKind struct {
	name    string // message word: "zone", "vnet", "subnet"
	idKey   string // id property in objects
	section func(*sdnConfig) map[string]map[string]string
	schema  schema // for output typing
	fixed   string // constant "type" of vnets and subnets; zones store theirs
}

var (
	sdnZones = sdnKind{name: "zone", idKey: "zone", schema: zoneSchema(false),
		section: func(c *sdnConfig) map[string]map[string]string { return c.Zones }}
	sdnVnets = sdnKind{name: "vnet", idKey: "vnet", schema: vnetSchema(false), fixed: "vnet",
		section: func(c *sdnConfig) map[string]map[string]string { return c.Vnets }}
	sdnSubnets = sdnKind{name: "subnet", idKey: "subnet", schema: subnetSchema(false), fixed: "subnet",
		section: func(c *sdnConfig) map[string]map[string]string { return c.Subnets }}
)

// object types one section entry for output: integers and booleans as JSON
// numbers, as the SDN section-config parser produces them ("tag":10,
// "vlanaware":1), everything else as strings.
func (k sdnKind) object(id string, attrs map[string]string) map[string]any {
	o := map[string]any{k.idKey: id}
	if k.fixed != "" {
		o["type"] = k.fixed
	}
	for a, v := range attrs {
		p := k.schema[a]
		switch {
		case a == "dhcp-range":
			o[a] = strings.Split(v, "\n")
		case p.kind == kInt || p.kind == kBool:
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				o[a] = n
			} else {
				o[a] = v
			}
		default:
			o[a] = v
		}
	}
	if k.name == "subnet" {
		addSubnetFields(o, id, attrs)
	}
	return o
}

// addSubnetFields adds the derived cidr/network/mask/zone that PVE shows.
func addSubnetFields(o map[string]any, id string, attrs map[string]string) {
	if pf, err := netip.ParsePrefix(attrs["cidr"]); err == nil {
		o["cidr"] = pf.String()
		o["network"] = pf.Addr().String()
		o["mask"] = strconv.Itoa(pf.Bits()) // a string, as in PVE
	}
	if zone, _, ok := strings.Cut(id, "-"); ok {
		o["zone"] = zone
	}
}

// view returns one object in the requested view: plain (the edited config),
// running, or pending (running values plus "state" and a "pending" object).
func (k sdnKind) view(st *sdnState, id string, c *call) (map[string]any, bool) {
	pend, inPend := k.section(&st.Pending)[id]
	run, inRun := k.section(&st.Running)[id]
	switch {
	case c.params["running"] == "1":
		if !inRun {
			return nil, false
		}
		return k.object(id, run), true
	case c.params["pending"] == "1":
		switch {
		case inPend && !inRun:
			o := map[string]any{k.idKey: id, "state": "new", "pending": k.object(id, pend)}
			if t, ok := pend["type"]; ok {
				o["type"] = t
			} else if k.fixed != "" {
				o["type"] = k.fixed
			}
			return o, true
		case inRun && !inPend:
			o := k.object(id, run)
			o["state"] = "deleted"
			return o, true
		case inRun && inPend:
			o := k.object(id, run)
			if !maps.Equal(run, pend) {
				o["state"] = "changed"
				o["pending"] = k.object(id, pend)
			}
			return o, true
		}
		return nil, false
	default:
		if !inPend {
			return nil, false
		}
		o := k.object(id, pend)
		o["digest"] = st.Pending.digest()
		return o, true
	}
}

func (k sdnKind) ids(st *sdnState) []string {
	set := map[string]bool{}
	for id := range k.section(&st.Pending) {
		set[id] = true
	}
	for id := range k.section(&st.Running) {
		set[id] = true
	}
	return slices.Sorted(maps.Keys(set))
}

func (s *Server) sdnList(k sdnKind, keep func(c *call, attrs map[string]string) bool) func(*call) (result, error) {
	return func(c *call) (result, error) {
		return s.withSDN(c, false, func(st *sdnState) (result, error) {
			list := []map[string]any{}
			for _, id := range k.ids(st) {
				attrs := k.section(&st.Pending)[id]
				if attrs == nil {
					attrs = k.section(&st.Running)[id]
				}
				if keep != nil && !keep(c, attrs) {
					continue
				}
				if o, ok := k.view(st, id, c); ok {
					list = append(list, o)
				}
			}
			return result{data: list}, nil
		})
	}
}

func (s *Server) sdnGet(k sdnKind, idOf func(*call, *sdnState) string) func(*call) (result, error) {
	return func(c *call) (result, error) {
		return s.withSDN(c, false, func(st *sdnState) (result, error) {
			id := idOf(c, st)
			o, ok := k.view(st, id, c)
			if !ok {
				return result{}, dieError("sdn %s '%s' does not exist", k.name, id)
			}
			return result{data: o}, nil
		})
	}
}

// storeParams copies the validated, non-structural parameters into attrs.
func storeParams(attrs map[string]string, c *call, skip ...string) {
	for key, v := range c.params {
		if slices.Contains(skip, key) {
			continue
		}
		switch key {
		case "lock-token", "digest", "delete":
			continue
		}
		attrs[key] = v
	}
	for key, v := range c.arrays {
		attrs[key] = strings.Join(v, "\n")
	}
}

func checkDigest(c *call, cfg *sdnConfig) error {
	if d := c.params["digest"]; d != "" && d != cfg.digest() {
		return dieError("detected modified configuration - file changed by other user? Try again.")
	}
	return nil
}

func (s *Server) zoneCreate(c *call) (result, error) {
	return s.withSDN(c, true, func(st *sdnState) (result, error) {
		id := c.params["zone"]
		if _, ok := st.Pending.Zones[id]; ok {
			return result{}, dieError("sdn zone object ID '%s' already defined", id)
		}
		attrs := map[string]string{}
		storeParams(attrs, c, "zone")
		st.Pending.Zones[id] = attrs
		return result{}, nil
	})
}

func (s *Server) zoneUpdate(c *call) (result, error) {
	return s.withSDN(c, true, func(st *sdnState) (result, error) {
		id := c.params["zone"]
		attrs, ok := st.Pending.Zones[id]
		if !ok {
			return result{}, dieError("sdn zone '%s' does not exist", id)
		}
		if err := checkDigest(c, &st.Pending); err != nil {
			return result{}, err
		}
		for _, d := range splitList(c.params["delete"]) {
			if d != "type" {
				delete(attrs, d)
			}
		}
		storeParams(attrs, c, "zone")
		return result{}, nil
	})
}

func (s *Server) zoneDelete(c *call) (result, error) {
	return s.withSDN(c, true, func(st *sdnState) (result, error) {
		id := c.params["zone"]
		if _, ok := st.Pending.Zones[id]; !ok {
			return result{}, dieError("sdn zone '%s' does not exist", id)
		}
		for vnet, v := range st.Pending.Vnets {
			if v["zone"] == id {
				return result{}, dieError("Can't delete zone '%s': vnet '%s' uses it", id, vnet)
			}
		}
		delete(st.Pending.Zones, id)
		return result{}, nil
	})
}

func (s *Server) vnetCreate(c *call) (result, error) {
	return s.withSDN(c, true, func(st *sdnState) (result, error) {
		id := c.params["vnet"]
		if _, ok := st.Pending.Vnets[id]; ok {
			return result{}, dieError("sdn vnet object ID '%s' already defined", id)
		}
		if _, ok := st.Pending.Zones[c.params["zone"]]; !ok {
			return result{}, paramErr("zone", fmt.Sprintf("zone '%s' does not exist", c.params["zone"]))
		}
		attrs := map[string]string{}
		storeParams(attrs, c, "vnet", "type")
		st.Pending.Vnets[id] = attrs
		return result{}, nil
	})
}

func (s *Server) vnetUpdate(c *call) (result, error) {
	return s.withSDN(c, true, func(st *sdnState) (result, error) {
		id := c.params["vnet"]
		attrs, ok := st.Pending.Vnets[id]
		if !ok {
			return result{}, dieError("sdn vnet '%s' does not exist", id)
		}
		if err := checkDigest(c, &st.Pending); err != nil {
			return result{}, err
		}
		if z, ok := c.params["zone"]; ok {
			if _, exists := st.Pending.Zones[z]; !exists {
				return result{}, paramErr("zone", fmt.Sprintf("zone '%s' does not exist", z))
			}
		}
		for _, d := range splitList(c.params["delete"]) {
			if d != "zone" {
				delete(attrs, d)
			}
		}
		storeParams(attrs, c, "vnet")
		return result{}, nil
	})
}

func (s *Server) vnetDelete(c *call) (result, error) {
	return s.withSDN(c, true, func(st *sdnState) (result, error) {
		id := c.params["vnet"]
		if _, ok := st.Pending.Vnets[id]; !ok {
			return result{}, dieError("sdn vnet '%s' does not exist", id)
		}
		for sub, v := range st.Pending.Subnets {
			if v["vnet"] == id {
				return result{}, dieError("Can't delete vnet '%s': subnet '%s' uses it", id, sub)
			}
		}
		delete(st.Pending.Vnets, id)
		return result{}, nil
	})
}

// subnetID maps the {subnet} path variable to a section id. PVE ids are
// "<zone>-<network>-<prefix>"; a CIDR is accepted too and completed with
// the vnet's zone.
func subnetID(c *call, st *sdnState) string {
	id := c.params["subnet"]
	if pf, err := netip.ParsePrefix(id); err == nil {
		zone := st.Pending.Vnets[c.params["vnet"]]["zone"]
		return zone + "-" + strings.ReplaceAll(pf.Masked().String(), "/", "-")
	}
	return id
}

// subnetsOfVnet keeps the subnets of the vnet in the path.
func subnetsOfVnet(c *call, attrs map[string]string) bool { return attrs["vnet"] == c.params["vnet"] }

// zonesOfType implements GET /cluster/sdn/zones?type=.
func zonesOfType(c *call, attrs map[string]string) bool {
	t, ok := c.params["type"]
	return !ok || attrs["type"] == t
}

func (s *Server) subnetCreate(c *call) (result, error) {
	return s.withSDN(c, true, func(st *sdnState) (result, error) {
		vnet := c.params["vnet"]
		v, ok := st.Pending.Vnets[vnet]
		if !ok {
			return result{}, dieError("sdn vnet '%s' does not exist", vnet)
		}
		pf, err := netip.ParsePrefix(c.params["subnet"])
		if err != nil {
			return result{}, paramErr("subnet", "invalid format - value does not look like a valid CIDR network")
		}
		pf = pf.Masked()
		id := v["zone"] + "-" + strings.ReplaceAll(pf.String(), "/", "-")
		if _, ok := st.Pending.Subnets[id]; ok {
			return result{}, dieError("sdn subnet object ID '%s' already defined", id)
		}
		if gw, ok := c.params["gateway"]; ok {
			if a, err := netip.ParseAddr(gw); err != nil || !pf.Contains(a) {
				return result{}, paramErr("gateway", fmt.Sprintf("gateway %s is not in subnet %s", gw, pf))
			}
		}
		attrs := map[string]string{"cidr": pf.String()}
		storeParams(attrs, c, "subnet", "type")
		st.Pending.Subnets[id] = attrs
		return result{}, nil
	})
}

func (s *Server) subnetUpdate(c *call) (result, error) {
	return s.withSDN(c, true, func(st *sdnState) (result, error) {
		id := subnetID(c, st)
		attrs, ok := st.Pending.Subnets[id]
		if !ok || attrs["vnet"] != c.params["vnet"] {
			return result{}, dieError("sdn subnet '%s' does not exist", id)
		}
		if err := checkDigest(c, &st.Pending); err != nil {
			return result{}, err
		}
		for _, d := range splitList(c.params["delete"]) {
			if d != "vnet" && d != "cidr" {
				delete(attrs, d)
			}
		}
		storeParams(attrs, c, "subnet", "vnet")
		return result{}, nil
	})
}

func (s *Server) subnetDelete(c *call) (result, error) {
	return s.withSDN(c, true, func(st *sdnState) (result, error) {
		id := subnetID(c, st)
		if attrs, ok := st.Pending.Subnets[id]; !ok || attrs["vnet"] != c.params["vnet"] {
			return result{}, dieError("sdn subnet '%s' does not exist", id)
		}
		delete(st.Pending.Subnets, id)
		return result{}, nil
	})
}

// sdnIndex is GET /cluster/sdn, the directory index.
func (s *Server) sdnIndex(*call) (result, error) {
	ids := []string{"vnets", "zones", "controllers", "ipams", "dns", "fabrics"}
	list := make([]map[string]any, 0, len(ids))
	for _, id := range ids {
		list = append(list, map[string]any{"id": id})
	}
	return result{data: list}, nil
}

// sdnApply is PUT /cluster/sdn: commit the edited config as running config
// and return the reloadnetworkall task's UPID.
func (s *Server) sdnApply(c *call) (result, error) {
	return s.withSDN(c, true, func(st *sdnState) (result, error) {
		st.Running = st.Pending.clone()
		return result{data: s.newUPID("reloadnetworkall", "", c.user)}, nil
	})
}

// sdnRollback is POST /cluster/sdn/rollback: throw the edits away.
func (s *Server) sdnRollback(c *call) (result, error) {
	return s.withSDN(c, true, func(st *sdnState) (result, error) {
		st.Pending = st.Running.clone()
		return result{data: nil}, nil
	})
}
