package pvedemo

import (
	"crypto/subtle"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// netState is one consistent read of the node network files.
type netState struct {
	running     *netConfig
	runningText string
	runningTime time.Time
	pendingText string // interfaces.new; "" with hasPending false when absent
	pendingTime time.Time
	hasPending  bool
}

// effective is the config PVE shows and edits: interfaces.new when it
// exists, otherwise interfaces.
func (ns *netState) effective() (*netConfig, string, error) {
	if !ns.hasPending {
		return ns.running, ns.runningText, nil
	}
	cfg, err := parseInterfaces(ns.pendingText)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", fileInterfacesNew, err)
	}
	return cfg, ns.pendingText, nil
}

func (ns *netState) changes() string {
	if !ns.hasPending {
		return ""
	}
	return unifiedDiff("/etc/network/interfaces", ns.runningTime, ns.runningText,
		"/etc/network/interfaces.new", ns.pendingTime, ns.pendingText)
}

// loadNet reads both files; the caller holds the network lock.
func (s *Server) loadNet() (*netState, error) {
	run, rt, ok, err := s.store.read(fileInterfaces)
	if err != nil {
		return nil, err
	}
	if !ok {
		run = nil // a node without /etc/network/interfaces: empty config
	}
	ns := &netState{runningText: string(run), runningTime: rt}
	if ns.running, err = parseInterfaces(ns.runningText); err != nil {
		return nil, fmt.Errorf("%s: %w", fileInterfaces, err)
	}
	pend, pt, ok, err := s.store.read(fileInterfacesNew)
	if err != nil {
		return nil, err
	}
	ns.pendingText, ns.pendingTime, ns.hasPending = string(pend), pt, ok
	return ns, nil
}

// withNet runs fn under the network lock with a fresh read of the files.
func (s *Server) withNet(c *call, exclusive bool, fn func(*netState) (result, error)) (result, error) {
	unlock, err := s.store.lock(c.r.Context(), fileNetworkLock, exclusive)
	if err != nil {
		return result{}, err
	}
	defer unlock()
	ns, err := s.loadNet()
	if err != nil {
		return result{}, err
	}
	return fn(ns)
}

// stage writes cfg as interfaces.new, the way every node network write in PVE
// only stages a change. Nothing is written (and nothing counts as applied)
// when the staged text would not differ from what GET already shows.
func (s *Server) stage(ns *netState, cfg *netConfig) (result, error) {
	_, before, err := ns.effective()
	if err != nil {
		return result{}, err
	}
	text := renderInterfaces(cfg)
	if text == before {
		return result{data: nil}, nil
	}
	if err := s.store.write(fileInterfacesNew, []byte(text)); err != nil {
		return result{}, err
	}
	return result{data: nil, changed: true}, nil
}

// listTypes implements the ?type= filter of GET /nodes/{node}/network.
func listTypes(filter string) func(t string) bool {
	switch filter {
	case "":
		return func(t string) bool { return t != "loopback" && t != "vnet" && t != "fabric" }
	case "any_bridge", "any_local_bridge":
		return func(t string) bool {
			return t == "bridge" || t == "OVSBridge" || (filter == "any_bridge" && t == "vnet")
		}
	case "include_sdn":
		return func(t string) bool { return t != "loopback" }
	default:
		return func(t string) bool { return t == filter }
	}
}

func (s *Server) networkList(c *call) (result, error) {
	return s.withNet(c, false, func(ns *netState) (result, error) {
		cfg, _, err := ns.effective()
		if err != nil {
			return result{}, err
		}
		keep := listTypes(c.params["type"])
		names := make([]string, 0, len(cfg.Ifaces))
		for n, ifc := range cfg.Ifaces {
			if keep(ifc.Type) {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		list := make([]map[string]any, 0, len(names))
		for _, n := range names {
			_, active := ns.running.Ifaces[n]
			list = append(list, cfg.Ifaces[n].apiObject(active, true))
		}
		return result{data: list, changes: ns.changes()}, nil
	})
}

func (s *Server) networkGet(c *call) (result, error) {
	return s.withNet(c, false, func(ns *netState) (result, error) {
		cfg, _, err := ns.effective()
		if err != nil {
			return result{}, err
		}
		ifc, ok := cfg.Ifaces[c.params["iface"]]
		if !ok {
			return result{}, paramErr("iface", "interface does not exist")
		}
		_, active := ns.running.Ifaces[ifc.Name]
		// The single read has no "iface" key: only the list adds it (hash_to_array).
		return result{data: ifc.apiObject(active, false)}, nil
	})
}

func (s *Server) networkCreate(c *call) (result, error) {
	return s.withNet(c, true, func(ns *netState) (result, error) {
		cfg, _, err := ns.effective()
		if err != nil {
			return result{}, err
		}
		name, typ := c.params["iface"], c.params["type"]
		if _, exists := cfg.Ifaces[name]; exists {
			return result{}, paramErr("iface", "interface already exists")
		}
		if typ == "vnet" || typ == "fabric" {
			return result{}, paramErr("type", fmt.Sprintf("interfaces of type '%s' are managed by SDN", typ))
		}
		ifc := &netIface{Name: name, Type: typ, Attrs: map[string]string{}}
		switch typ {
		case "bridge":
			ifc.Attrs["bridge_ports"] = ""
			ifc.Attrs["bridge_stp"] = "off"
			ifc.Attrs["bridge_fd"] = "0"
		case "bond":
			ifc.Attrs["slaves"] = ""
			ifc.Attrs["bond_miimon"] = "100"
		case "OVSBridge", "OVSBond", "OVSPort", "OVSIntPort":
			ifc.Attrs["ovs_type"] = typ
		}
		prio := 0
		for _, o := range cfg.Ifaces {
			prio = max(prio, o.Priority)
		}
		ifc.Priority = prio + 1
		if err := applyNetParams(cfg, ifc, c, nil); err != nil {
			return result{}, err
		}
		cfg.Ifaces[name] = ifc
		if err := linkOVS(cfg, ifc); err != nil {
			return result{}, err
		}
		return s.stage(ns, cfg)
	})
}

func (s *Server) networkUpdate(c *call) (result, error) {
	return s.withNet(c, true, func(ns *netState) (result, error) {
		cfg, _, err := ns.effective()
		if err != nil {
			return result{}, err
		}
		ifc, ok := cfg.Ifaces[c.params["iface"]]
		if !ok {
			return result{}, paramErr("iface", "interface does not exist")
		}
		// PVE overwrites the type with whatever the client sends; the demo
		// refuses a change instead, so a misclassified write shows up loudly.
		if typ := c.params["type"]; typ != ifc.Type && ifc.Type != "unknown" {
			return result{}, paramErr("type", fmt.Sprintf("interface '%s' is of type '%s', not '%s'", ifc.Name, ifc.Type, typ))
		}
		if err := applyNetParams(cfg, ifc, c, splitList(c.params["delete"])); err != nil {
			return result{}, err
		}
		if err := linkOVS(cfg, ifc); err != nil {
			return result{}, err
		}
		return s.stage(ns, cfg)
	})
}

func (s *Server) networkDelete(c *call) (result, error) {
	return s.withNet(c, true, func(ns *netState) (result, error) {
		cfg, _, err := ns.effective()
		if err != nil {
			return result{}, err
		}
		name := c.params["iface"]
		ifc, ok := cfg.Ifaces[name]
		if !ok {
			return result{}, paramErr("iface", "interface does not exist")
		}
		delete(cfg.Ifaces, name)
		// As Network.pm does: an OVS member also leaves its bridge's ovs_ports.
		if br := cfg.Ifaces[ifc.Attrs["ovs_bridge"]]; br != nil {
			br.Attrs["ovs_ports"] = strings.Join(slices.DeleteFunc(splitList(br.Attrs["ovs_ports"]), func(p string) bool { return p == name }), " ")
			if br.Attrs["ovs_ports"] == "" {
				delete(br.Attrs, "ovs_ports")
			}
		}
		return s.stage(ns, cfg)
	})
}

// networkApply is PUT /nodes/{node}/network: interfaces.new becomes
// interfaces and a srvreload task UPID is returned. The task finishes at once
// (there is no ifreload to run), so status polling sees "stopped"/"OK".
func (s *Server) networkApply(c *call) (result, error) {
	return s.withNet(c, true, func(ns *netState) (result, error) {
		res := result{data: s.newUPID("srvreload", "networking", c.user)}
		if ns.hasPending {
			if _, _, err := ns.effective(); err != nil {
				return result{}, err // never activate a file we cannot parse
			}
			if err := s.store.rename(fileInterfacesNew, fileInterfaces); err != nil {
				return result{}, err
			}
			res.changed = true
		}
		return res, nil
	})
}

// networkRevert is DELETE /nodes/{node}/network: drop interfaces.new.
func (s *Server) networkRevert(c *call) (result, error) {
	return s.withNet(c, true, func(ns *netState) (result, error) {
		if !ns.hasPending {
			return result{data: nil}, nil
		}
		if err := s.store.remove(fileInterfacesNew); err != nil {
			return result{}, err
		}
		return result{data: nil, changed: true}, nil
	})
}

// applyNetParams merges request parameters into ifc like Network.pm's create
// and update: "delete" first, cidr split into address/netmask, method
// following the presence of an address, one default gateway per family,
// no port in two bridges or bonds.
func applyNetParams(cfg *netConfig, ifc *netIface, c *call, del []string) error {
	for _, k := range del {
		switch k {
		case "address", "netmask", "cidr":
			delete(ifc.Attrs, "address")
			delete(ifc.Attrs, "netmask")
			delete(ifc.Attrs, "cidr")
		case "address6", "netmask6", "cidr6":
			delete(ifc.Attrs, "address6")
			delete(ifc.Attrs, "netmask6")
			delete(ifc.Attrs, "cidr6")
		case "comments":
			ifc.Comments = ""
		case "comments6":
			ifc.Comments6 = ""
		case "autostart":
			ifc.Autostart = false
		default:
			delete(ifc.Attrs, k)
		}
	}
	p := c.params
	for _, fam := range []struct{ cidr, addr, mask string }{{"cidr", "address", "netmask"}, {"cidr6", "address6", "netmask6"}} {
		if v, ok := p[fam.cidr]; ok {
			// netip keeps the host bits, so this is the address the client wrote.
			a, m, _ := strings.Cut(v, "/")
			ifc.Attrs[fam.addr], ifc.Attrs[fam.mask] = a, m
		}
		if v, ok := p[fam.addr]; ok {
			ifc.Attrs[fam.addr] = v
		}
		if v, ok := p[fam.mask]; ok {
			ifc.Attrs[fam.mask] = v
		}
		if ifc.Attrs[fam.addr] != "" {
			if ifc.Attrs[fam.mask] == "" {
				return paramErr(fam.mask, fmt.Sprintf("missing property - '%s' requires this property", fam.addr))
			}
			ifc.Attrs[fam.cidr] = ifc.Attrs[fam.addr] + "/" + ifc.Attrs[fam.mask]
		} else {
			delete(ifc.Attrs, fam.mask)
			delete(ifc.Attrs, fam.cidr)
		}
	}
	for k, v := range p {
		switch k {
		case "node", "iface", "type", "delete", "cidr", "cidr6", "address", "address6", "netmask", "netmask6":
		case "autostart":
			ifc.Autostart = v == "1"
		case "comments":
			ifc.Comments = normComment(v)
		case "comments6":
			ifc.Comments6 = normComment(v)
		case "bridge_vlan_aware":
			if v == "1" {
				ifc.Attrs[k] = "1"
			} else {
				delete(ifc.Attrs, k)
			}
		default:
			ifc.Attrs[k] = v
		}
	}
	if ifc.Type == "loopback" {
		ifc.Method = "loopback"
	} else if ifc.Attrs["address"] != "" {
		ifc.Method = "static"
	} else if ifc.Method == "" || ifc.Method == "static" {
		ifc.Method = "manual"
	}
	switch {
	case ifc.Attrs["address6"] != "":
		ifc.Method6 = "static"
	case ifc.Method6 == "static" || ifc.Method6 == "":
		ifc.Method6 = "manual"
	}
	if ifc.Type == "vlan" && !vlanName.MatchString(ifc.Name) && (ifc.Attrs["vlan-raw-device"] == "" || ifc.Attrs["vlan-id"] == "") {
		return paramErr("vlan-raw-device", "vlan-raw-device and vlan-id are required when the name is not <device>.<vid>")
	}
	for _, gw := range []string{"gateway", "gateway6"} {
		if ifc.Attrs[gw] == "" {
			continue
		}
		for name, o := range cfg.Ifaces {
			if name != ifc.Name && o.Attrs[gw] != "" {
				return paramErr(gw, fmt.Sprintf("Default gateway already exists on interface '%s'.", name))
			}
		}
	}
	for _, key := range []string{"bridge_ports", "slaves"} {
		for _, port := range splitList(ifc.Attrs[key]) {
			for name, o := range cfg.Ifaces {
				if name == ifc.Name {
					continue
				}
				for _, k2 := range []string{"bridge_ports", "slaves"} {
					if slices.Contains(splitList(o.Attrs[k2]), port) {
						return paramErr(key, fmt.Sprintf("%s is already used on interface '%s'", port, name))
					}
				}
			}
		}
	}
	return nil
}

// linkOVS adds an OVSBond/OVSIntPort/OVSPort to its bridge's ovs_ports, as
// the create handler in Network.pm does.
func linkOVS(cfg *netConfig, ifc *netIface) error {
	switch ifc.Type {
	case "OVSBond", "OVSIntPort", "OVSPort":
	default:
		return nil
	}
	brName := ifc.Attrs["ovs_bridge"]
	if brName == "" {
		if ifc.Type == "OVSPort" {
			return nil
		}
		return paramErr("ovs_bridge", "property is missing and it is not optional")
	}
	br, ok := cfg.Ifaces[brName]
	if !ok || br.Type != "OVSBridge" {
		return paramErr("ovs_bridge", fmt.Sprintf("bridge '%s' does not exist or is not an OVSBridge", brName))
	}
	ports := splitList(br.Attrs["ovs_ports"])
	if !slices.Contains(ports, ifc.Name) {
		br.Attrs["ovs_ports"] = strings.Join(append(ports, ifc.Name), " ")
	}
	return nil
}

func normComment(v string) string {
	v = strings.TrimRight(v, "\n")
	if v == "" {
		return ""
	}
	return v + "\n"
}

// --- tasks ---

// upidRe is PVE::Tools::upid_decode's pattern.
var upidRe = regexp.MustCompile(`^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s]+):([^:\s]*):([^:\s]+):$`)

// newUPID builds a task id in pve-common's format. PSTART is a per-process
// counter so two applies in one second still get different UPIDs.
func (s *Server) newUPID(typ, id, user string) string {
	if user == "" {
		user = "root@pam"
	}
	pstart := s.taskSeq.Add(1)
	return fmt.Sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:%s:", s.node, os.Getpid(), pstart, time.Now().Unix(), typ, id, user)
}

// taskStatus answers GET /nodes/{node}/tasks/{upid}/status for any
// well-formed UPID: every demo task has finished successfully by the time a
// client asks. It needs no task table, so either backend can answer for a
// task the other one started.
func (s *Server) taskStatus(c *call) (result, error) {
	upid := c.params["upid"]
	m := upidRe.FindStringSubmatch(upid)
	if m == nil {
		return result{}, dieError("unable to parse worker upid '%s'", upid)
	}
	num := func(h string) int64 { n, _ := strconv.ParseInt(h, 16, 64); return n }
	return result{data: map[string]any{
		"upid":       upid,
		"node":       m[1],
		"pid":        num(m[3]),
		"pstart":     num(m[4]),
		"starttime":  num(m[5]),
		"type":       m[6],
		"id":         m[7],
		"user":       m[8],
		"status":     "stopped",
		"exitstatus": "OK",
	}}, nil
}

// --- misc ---

func (s *Server) version(*call) (result, error) {
	return result{data: map[string]any{
		"version": "9.1.3",
		"release": "9.1",
		"repoid":  "0bd20cd6",
		"console": "html5",
	}}, nil
}

// ticketCreate is POST /access/ticket: any user, the configured password.
func (s *Server) ticketCreate(c *call) (result, error) {
	user := c.params["username"]
	if !strings.Contains(user, "@") {
		realm := c.params["realm"]
		if realm == "" {
			realm = "pam"
		}
		user += "@" + realm
	}
	if subtle.ConstantTimeCompare([]byte(c.params["password"]), []byte(s.auth.password)) != 1 {
		return result{}, &apiError{status: 401, message: "authentication failure\n"}
	}
	ticket, csrf := s.auth.issue(user)
	return result{data: map[string]any{
		"username":            user,
		"ticket":              ticket,
		"CSRFPreventionToken": csrf,
		"clustername":         "demo",
	}}, nil
}
