// Package vip puts a cluster's virtual writer address on an interface of
// this host and announces it with gratuitous ARP, so that clients on the
// segment send to this host at once, or takes it off. `dbha guard` holds
// it while it holds its server's write lease (guard.VIP).
package vip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/vishvananda/netlink"
)

// Address is the virtual address on one interface.
type Address struct {
	prefix netip.Prefix
	link   netlink.Link
	ifi    *net.Interface
	log    *slog.Logger
}

// New finds the interface: iface by name, or else the one that holds near
// (the guarded instance's own address). It changes nothing.
func New(prefix netip.Prefix, iface string, near netip.Addr, log *slog.Logger) (*Address, error) {
	if !prefix.Addr().Is4() {
		return nil, fmt.Errorf("vip %s: IPv4 only", prefix)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if iface == "" {
		name, err := interfaceOf(near)
		if err != nil {
			return nil, err
		}
		iface = name
	}
	link, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("vip %s: interface %q: %w", prefix, iface, err)
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("vip %s: interface %q: %w", prefix, iface, err)
	}
	return &Address{prefix: prefix, link: link, ifi: ifi, log: log.With("vip", prefix.String(), "interface", iface)}, nil
}

// interfaceOf names the interface that holds addr.
func interfaceOf(addr netip.Addr) (string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifi := range ifaces {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr.Unmap() {
					return ifi.Name, nil
				}
			}
		}
	}
	return "", fmt.Errorf("no interface of this host holds %s (the guarded instance's address): set vip.interface", addr)
}

func (a *Address) String() string { return a.prefix.String() + " on " + a.ifi.Name }

func (a *Address) netlinkAddr() *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.prefix.Addr().AsSlice(), Mask: net.CIDRMask(a.prefix.Bits(), 32)}}
}

// Hold puts the address on the interface (again, harmlessly, when it is
// there) and announces it: a gratuitous ARP request and reply now, and
// twice more within 1.5 s in the background, since a neighbour ignores an
// update within a second of the last one (Linux's locktime).
func (a *Address) Hold() error {
	if err := netlink.AddrReplace(a.link, a.netlinkAddr()); err != nil {
		return fmt.Errorf("add %s: %w", a, err)
	}
	c, err := arp.Dial(a.ifi)
	if err != nil {
		return fmt.Errorf("announce %s: %w", a, err)
	}
	if err := a.announce(c); err != nil {
		c.Close()
		return err
	}
	go func() {
		defer c.Close()
		for _, d := range []time.Duration{500 * time.Millisecond, time.Second} {
			time.Sleep(d)
			if err := a.announce(c); err != nil {
				a.log.Warn("announce the writer address again", "err", err)
				return
			}
		}
	}()
	return nil
}

// announce sends a gratuitous ARP request and reply to the broadcast
// address: sender and target are the virtual address.
func (a *Address) announce(c *arp.Client) error {
	ip := a.prefix.Addr()
	for _, op := range []arp.Operation{arp.OperationRequest, arp.OperationReply} {
		p, err := arp.NewPacket(op, a.ifi.HardwareAddr, ip, ethernet.Broadcast, ip)
		if err != nil {
			return err
		}
		if err := c.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
			return err
		}
		if err := c.WriteTo(p, ethernet.Broadcast); err != nil {
			return fmt.Errorf("announce %s: %w", a, err)
		}
	}
	return nil
}

// Drop takes the address off the interface; an address not there is
// not an error.
func (a *Address) Drop() error {
	err := netlink.AddrDel(a.link, a.netlinkAddr())
	if err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
		return fmt.Errorf("remove %s: %w", a, err)
	}
	return nil
}

// Held reports whether the address is on the interface.
func (a *Address) Held() (bool, error) {
	addrs, err := netlink.AddrList(a.link, netlink.FAMILY_V4)
	if err != nil {
		return false, err
	}
	for _, x := range addrs {
		if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a.prefix.Addr() {
			return true, nil
		}
	}
	return false, nil
}
