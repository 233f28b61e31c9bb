package stream

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// standbyProtocol is the group protocol name of standbyBalancer.
const standbyProtocol = "tailor-standby"

// userDataVersion is the version of both userdata encodings this code
// writes. A later version may only append fields, so a reader takes the
// fields it knows from any version from 1 on and ignores what follows.
const userDataVersion = 1

// errUserData is wrapped by every error decoding a tailor userdata.
var errUserData = errors.New("malformed tailor group userdata")

// balancerConfig is what standbyBalancer needs from its processor.
type balancerConfig struct {
	// Topic is the events topic: the only topic balanced with standbys
	// and freshness. Other topics get the same sticky, balanced
	// assignment without them.
	Topic string
	// Standbys is the number of standby replicas per partition
	// (kafka.standby_replicas; 0: none).
	Standbys int
	// Advertise is this member's HTTP address, published in its
	// metadata for the cluster view.
	Advertise string
	// Freshness returns, for each partition of Topic with a local store
	// copy on this instance (owned or standby), the changelog offset
	// that copy reflects; negative: unknown or none, which counts as no
	// copy. Called at every JoinGroup.
	Freshness func() map[int32]int64
	// OnAssignment is called from ParseSyncAssignment, before franz-go's
	// OnPartitionsRevoked and OnPartitionsAssigned for the same
	// generation, with this member's whole assignment of Topic: its
	// active partitions and its standby partitions (both sorted). A
	// partition this member gives up in a cooperative rebalance may be
	// in standby while it is still being revoked.
	OnAssignment func(active, standby []int32)
}

// standbyBalancer is a kgo.GroupBalancer (the "tailor-standby" protocol,
// cooperative) that assigns each partition of the events topic to one
// member to consume and to up to Standbys other members to keep a warm
// copy of its store (a standby, tailing the changelog).
//
// Members publish, in their JoinGroup metadata, their HTTP address and
// how fresh each local store copy is (the changelog offset it reflects).
// The leader keeps every member's partitions where counts stay balanced,
// gives the rest to the member with the freshest copy, as Kafka Streams'
// HighAvailabilityTaskAssignor (KIP-441) gives a stateful task to its
// most caught-up client, and places standbys on members that already
// hold a copy. So when an instance dies its partitions go to their
// standbys, which serve at once instead of restoring from the changelog.
// Unlike KIP-441 it never keeps a partition on a caught-up member at the
// cost of balance: a partition that must move is first revoked
// (cooperative, KIP-429) and its new owner is made one of its standbys
// in the meantime, which warms its copy up for the handover.
//
// Use it with franz-go's own balancer as the fallback:
//
//	kgo.Balancers(newStandbyBalancer(cfg), kgo.CooperativeStickyBalancer())
//
// Kafka picks a protocol every member supports, so during a rolling
// upgrade from a version with cooperative-sticky only, the group keeps
// running cooperative-sticky (without standbys: OnAssignment is not
// called) until the last old member is gone, then switches to this one.
// Both are cooperative, so the switch never falls back to an eager
// rebalance, and both publish the partitions each member owns, so the
// first balance with this protocol is sticky to what the other assigned.
// Rolling back works the same way round.
//
// It never asks for a rebalance when freshness changes: franz-go calls
// JoinGroupMetadata when it joins for its own reasons (a member joined,
// left, or revoked partitions), and the leader balances with the
// freshness published then.
type standbyBalancer struct {
	cfg balancerConfig
}

// newStandbyBalancer returns the balancer for cfg.
func newStandbyBalancer(cfg balancerConfig) *standbyBalancer {
	return &standbyBalancer{cfg: cfg}
}

// ProtocolName implements kgo.GroupBalancer.
func (*standbyBalancer) ProtocolName() string { return standbyProtocol }

// IsCooperative implements kgo.GroupBalancer: a partition moves in two
// rebalances, revoked by its owner first (KIP-429).
func (*standbyBalancer) IsCooperative() bool { return true }

// JoinGroupMetadata implements kgo.GroupBalancer: a ConsumerMemberMetadata
// (version 3, with owned partitions and generation, as franz-go's sticky
// balancer writes it) whose UserData carries this member's address and
// freshness. The output is deterministic (sorted), so an unchanged member
// causes no rebalance.
func (s *standbyBalancer) JoinGroupMetadata(interests []string, current map[string][]int32, generation int32) []byte {
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Version = 3
	meta.Topics = interests
	meta.Generation = generation
	for _, topic := range slices.Sorted(maps.Keys(current)) {
		owned := kmsg.NewConsumerMemberMetadataOwnedPartition()
		owned.Topic = topic
		owned.Partitions = current[topic]
		slices.Sort(owned.Partitions)
		meta.OwnedPartitions = append(meta.OwnedPartitions, owned)
	}
	var fresh map[int32]int64
	if s.cfg.Freshness != nil {
		fresh = s.cfg.Freshness()
	}
	meta.UserData = appendMemberUserData(nil, memberUserData{Advertise: s.cfg.Advertise, Freshness: fresh})
	return meta.AppendTo(nil)
}

// ParseSyncAssignment implements kgo.GroupBalancer: it decodes this
// member's assignment, hands its active and standby partitions of the
// events topic to OnAssignment, and returns the active ones.
func (s *standbyBalancer) ParseSyncAssignment(assignment []byte) (map[string][]int32, error) {
	var a kmsg.ConsumerMemberAssignment
	if err := a.ReadFrom(assignment); err != nil {
		return nil, fmt.Errorf("read %s assignment (%d bytes): %w", standbyProtocol, len(assignment), err)
	}
	standby, err := decodeAssignmentUserData(a.UserData)
	if err != nil {
		return nil, fmt.Errorf("read %s assignment: %w", standbyProtocol, err)
	}
	active := make(map[string][]int32, len(a.Topics))
	for _, t := range a.Topics {
		active[t.Topic] = append(active[t.Topic], t.Partitions...)
	}
	if s.cfg.OnAssignment != nil {
		mine := slices.Clone(active[s.cfg.Topic])
		slices.Sort(mine)
		s.cfg.OnAssignment(mine, standby)
	}
	return active, nil
}

// MemberBalancer implements kgo.GroupBalancer with franz-go's
// ConsumerBalancer, which decodes each member's metadata and calls
// Balance.
func (s *standbyBalancer) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	b, err := kgo.NewConsumerBalancer(s, members)
	if err != nil {
		return nil, nil, fmt.Errorf("%s balancer for %d members: %w", standbyProtocol, len(members), err)
	}
	return b, b.MemberTopics(), nil
}

// Balance implements kgo.ConsumerBalancerBalance; the group leader runs
// it. Each topic's partitions are balanced over the members consuming it
// (balanceTopic); franz-go's AdjustCooperative then withholds every
// partition that moves from one live member to another until its owner
// has revoked it; last, the events topic's standbys are placed
// (placeStandbys), a withheld partition's first one on the member that
// will take it.
func (s *standbyBalancer) Balance(b *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	g := newGroupView(b, s.cfg.Topic)
	plan := b.NewPlan()
	var intended []int
	for _, topic := range slices.Sorted(maps.Keys(topics)) {
		owners := g.balanceTopic(topic, topics[topic])
		for p, m := range owners {
			plan.AddPartition(g.members[m].join, topic, int32(p))
		}
		if topic == s.cfg.Topic {
			intended = owners
		}
	}
	plan.AdjustCooperative(b)
	out := &standbyPlan{active: plan.AsMemberIDMap(), standby: make(map[string][]int32)}
	if len(intended) == 0 || s.cfg.Standbys <= 0 {
		return out
	}
	active := slices.Repeat([]int{-1}, len(intended))
	for m := range g.members {
		for _, p := range out.active[g.members[m].join.MemberID][s.cfg.Topic] {
			active[p] = m
		}
	}
	for m, ps := range g.placeStandbys(active, intended, s.cfg.Standbys) {
		out.standby[g.members[m].join.MemberID] = ps
	}
	return out
}

// groupMember is one member as the leader sees it.
type groupMember struct {
	join  *kmsg.JoinGroupResponseMember
	meta  *kmsg.ConsumerMemberMetadata
	fresh map[int32]int64 // copies of the events topic; nil without tailor's userdata
}

// groupView is the group being balanced: its members in franz-go's
// order (instance ID, then member ID), which makes every tie-break below
// deterministic.
type groupView struct {
	topic   string // the events topic
	members []groupMember
}

// newGroupView reads b's members. A member whose userdata is not
// tailor's (another version's, or none) balances as one without copies.
func newGroupView(b *kgo.ConsumerBalancer, topic string) *groupView {
	g := &groupView{topic: topic}
	b.EachMember(func(join *kmsg.JoinGroupResponseMember, meta *kmsg.ConsumerMemberMetadata) {
		m := groupMember{join: join, meta: meta}
		if ud, err := decodeMemberUserData(meta.UserData); err == nil {
			m.fresh = ud.Freshness
		}
		g.members = append(g.members, m)
	})
	instance := func(m groupMember) (int, string) {
		if id := m.join.InstanceID; id != nil {
			return 0, *id
		}
		return 1, ""
	}
	slices.SortStableFunc(g.members, func(a, b groupMember) int {
		sa, ia := instance(a)
		sb, ib := instance(b)
		return cmp.Or(cmp.Compare(sa, sb), strings.Compare(ia, ib), strings.Compare(a.join.MemberID, b.join.MemberID))
	})
	return g
}

// copyOf is how fresh member m's copy of partition p of topic is: the
// changelog offset it reflects, or -1 for none. Only the events topic
// has copies.
func (g *groupView) copyOf(m int, topic string, p int32) int64 {
	if topic != g.topic {
		return -1
	}
	if off, ok := g.members[m].fresh[p]; ok && off >= 0 {
		return off
	}
	return -1
}

// consumers returns the members that consume topic.
func (g *groupView) consumers(topic string) []int {
	var ms []int
	for m := range g.members {
		if slices.Contains(g.members[m].meta.Topics, topic) {
			ms = append(ms, m)
		}
	}
	return ms
}

// claims returns, for each of topic's n partitions, the member whose
// claim to own it counts (-1: none): among members that consume topic
// and list it in their owned partitions, the one with the highest
// generation (a lower one's claim is stale, KIP-792), ties to the first.
func (g *groupView) claims(topic string, n int32, ms []int) []int {
	owner := slices.Repeat([]int{-1}, int(n))
	for _, m := range ms {
		meta := g.members[m].meta
		for _, owned := range meta.OwnedPartitions {
			if owned.Topic != topic {
				continue
			}
			for _, p := range owned.Partitions {
				if p < 0 || p >= n {
					continue
				}
				if o := owner[p]; o == -1 || meta.Generation > g.members[o].meta.Generation {
					owner[p] = m
				}
			}
		}
	}
	return owner
}

// balanceTopic assigns topic's n partitions over the members consuming
// it and returns each partition's member (nil when none consumes it).
// Counts are balanced: with k members each gets n/k or n/k+1. It is
// sticky: a member keeps what it owns up to its count (keepOwned). The
// partitions left go, in order, to the member with room that holds the
// freshest copy, ties to the least loaded; when no member with room holds
// a copy, to the least loaded. Ties left go to the first in group order.
func (g *groupView) balanceTopic(topic string, n int32) []int {
	ms := g.consumers(topic)
	if len(ms) == 0 || n <= 0 {
		return nil
	}
	t := &topicBalance{
		g: g, topic: topic, ms: ms,
		base: int(n) / len(ms), extra: int(n) % len(ms),
		load:  make([]int, len(g.members)),
		owner: slices.Repeat([]int{-1}, int(n)),
	}
	t.keepOwned(g.claims(topic, n, ms))
	for p, m := range t.owner {
		if m == -1 {
			t.give(int32(p), t.pick(int32(p)))
		}
	}
	return t.owner
}

// topicBalance is one topic's assignment while balanceTopic builds it.
type topicBalance struct {
	g     *groupView
	topic string
	ms    []int // the members consuming topic
	// base is what every member gets; extra is how many more members
	// may still get one partition more (n%k to begin with).
	base, extra int
	load        []int // by member: partitions given
	owner       []int // by partition: member, -1 while free
}

// room reports whether member m can take one more partition.
func (t *topicBalance) room(m int) bool {
	return t.load[m] < t.base || t.load[m] == t.base && t.extra > 0
}

// give assigns partition p to member m, which has room.
func (t *topicBalance) give(p int32, m int) {
	t.owner[p] = m
	t.load[m]++
	if t.load[m] == t.base+1 {
		t.extra--
	}
}

// keepOwned gives each member the partitions whose claim counts for it
// (claims), up to base; then, while extra slots are left, one more to
// each member, in order, that owns more. A member over its count keeps
// first the partitions no other member holds a copy of, so that what it
// gives up is what another member can take warm.
func (t *topicBalance) keepOwned(claims []int) {
	next := make(map[int]int32, len(t.ms)) // member → first partition it does not keep
	for _, m := range t.ms {
		var owned []int32
		for p, o := range claims {
			if o == m {
				owned = append(owned, int32(p))
			}
		}
		elsewhere := func(p int32) int {
			if t.copiedElsewhere(m, p) {
				return 1
			}
			return 0
		}
		slices.SortStableFunc(owned, func(a, b int32) int { return elsewhere(a) - elsewhere(b) })
		keep := min(len(owned), t.base)
		for _, p := range owned[:keep] {
			t.give(p, m)
		}
		if len(owned) > keep {
			next[m] = owned[keep]
		}
	}
	for _, m := range t.ms {
		if p, ok := next[m]; ok && t.extra > 0 {
			t.give(p, m)
		}
	}
}

// copiedElsewhere reports whether a member other than m holds a copy of
// partition p.
func (t *topicBalance) copiedElsewhere(m int, p int32) bool {
	for _, o := range t.ms {
		if o != m && t.g.copyOf(o, t.topic, p) >= 0 {
			return true
		}
	}
	return false
}

// pick returns the member that takes free partition p: of those with
// room, the one with the freshest copy, then the least loaded, then the
// first. One always has room: free partitions and free slots are equal
// in number.
func (t *topicBalance) pick(p int32) int {
	best := -1
	for _, m := range t.ms {
		if !t.room(m) {
			continue
		}
		if best == -1 {
			best = m
			continue
		}
		fm, fb := t.g.copyOf(m, t.topic, p), t.g.copyOf(best, t.topic, p)
		if fm > fb || fm == fb && t.load[m] < t.load[best] {
			best = m
		}
	}
	return best
}

// placeStandbys chooses the standbys of each partition of the events
// topic, given its active member after the cooperative adjustment
// (active; -1: withheld until its owner revokes it) and the member the
// balance meant it for (intended). Each partition gets min(standbys,
// k-1) distinct members (k: the topic's consumers), never its active
// one. A withheld partition gets the member that will take it first, so
// its copy warms up before the handover. The others are chosen partition
// by partition by rank (standbyRanker.before), then spread evenly where
// copies piled them up (standbyRanker.spread). It returns each member's
// standby partitions, ascending.
func (g *groupView) placeStandbys(active, intended []int, standbys int) map[int][]int32 {
	ms := g.consumers(g.topic)
	count := min(standbys, len(ms)-1)
	if count <= 0 {
		return nil
	}
	r := &standbyRanker{
		g: g, ms: ms, active: active,
		limit: (len(active)*count + len(ms) - 1) / len(ms),
		load:  make([]int, len(g.members)),
	}
	chosen := make([][]int, len(active))
	for p := range active {
		if active[p] == -1 {
			chosen[p] = []int{intended[p]}
			r.load[intended[p]]++
		}
		for len(chosen[p]) < count {
			best := -1
			for _, m := range ms {
				if r.eligible(m, p, chosen[p]) && (best == -1 || r.before(m, best, int32(p))) {
					best = m
				}
			}
			chosen[p] = append(chosen[p], best)
			r.load[best]++
		}
	}
	r.spread(chosen)
	out := make(map[int][]int32, len(ms))
	for p, c := range chosen {
		for _, m := range c {
			out[m] = append(out[m], int32(p))
		}
	}
	return out
}

// standbyRanker ranks the candidate standbys of one partition after
// another (placeStandbys).
type standbyRanker struct {
	g      *groupView
	ms     []int // the events topic's consumers
	active []int // by partition: its active member, -1 if withheld
	limit  int   // the balanced standby count: ceil(n*count/k)
	load   []int // by member: standbys given
}

// eligible reports whether member m can be a standby of partition p,
// whose standbys so far are chosen.
func (r *standbyRanker) eligible(m, p int, chosen []int) bool {
	return m != r.active[p] && !slices.Contains(chosen, m)
}

// before reports whether member a ranks before member b as a standby of
// partition p: members under the balanced count before those at it, then
// members holding a copy (freshest first), then those with fewer
// standbys, then group order.
func (r *standbyRanker) before(a, b int, p int32) bool {
	if ua, ub := r.load[a] < r.limit, r.load[b] < r.limit; ua != ub {
		return ua
	}
	if fa, fb := r.g.copyOf(a, r.g.topic, p), r.g.copyOf(b, r.g.topic, p); fa != fb {
		return fa > fb
	}
	return r.load[a] < r.load[b]
}

// spread evens out what choosing by copies piled up: while a member has
// two standbys or more than another, one of its standbys moves to that
// other where it can (not the first of a withheld partition, which
// warms up its new owner), first one it holds no copy of, then one the
// other holds a copy of, then the lowest partition. Each move narrows
// the spread of loads, so this ends; a pile that no single move can
// reduce stays.
func (r *standbyRanker) spread(chosen [][]int) {
	for {
		x, y, p, i := -1, -1, -1, -1
		for _, a := range r.ms {
			for _, b := range r.ms {
				if r.load[a] <= r.load[b]+1 || x != -1 && r.load[a]-r.load[b] <= r.load[x]-r.load[y] {
					continue
				}
				if q, j := r.movable(a, b, chosen); q != -1 {
					x, y, p, i = a, b, q, j
				}
			}
		}
		if x == -1 {
			return
		}
		chosen[p][i] = y
		r.load[x]--
		r.load[y]++
	}
}

// movable returns a partition, and the index in its standbys, whose
// standby x could move to y (see spread), or -1.
func (r *standbyRanker) movable(x, y int, chosen [][]int) (int, int) {
	best, at, rank := -1, -1, 0
	for p, c := range chosen {
		i := slices.Index(c, x)
		if i == -1 || i == 0 && r.active[p] == -1 || !r.eligible(y, p, c) {
			continue
		}
		pr := 1
		if r.g.copyOf(x, r.g.topic, int32(p)) < 0 {
			pr += 2
		}
		if r.g.copyOf(y, r.g.topic, int32(p)) >= 0 {
			pr++
		}
		if pr > rank {
			best, at, rank = p, i, pr
		}
	}
	return best, at
}

// standbyPlan is a balance result: each member's active partitions by
// topic and its standby partitions of the events topic.
type standbyPlan struct {
	active  map[string]map[string][]int32 // member ID → topic → partitions
	standby map[string][]int32            // member ID → partitions
}

// IntoSyncAssignment implements kgo.IntoSyncAssignment: for each member,
// by member ID, a ConsumerMemberAssignment of its active partitions whose
// UserData is its standbys (appendAssignmentUserData), all sorted.
func (sp *standbyPlan) IntoSyncAssignment() []kmsg.SyncGroupRequestGroupAssignment {
	out := make([]kmsg.SyncGroupRequestGroupAssignment, 0, len(sp.active))
	for _, member := range slices.Sorted(maps.Keys(sp.active)) {
		a := kmsg.NewConsumerMemberAssignment()
		topics := sp.active[member]
		for _, topic := range slices.Sorted(maps.Keys(topics)) {
			if len(topics[topic]) == 0 {
				continue
			}
			t := kmsg.NewConsumerMemberAssignmentTopic()
			t.Topic = topic
			t.Partitions = slices.Sorted(slices.Values(topics[topic]))
			a.Topics = append(a.Topics, t)
		}
		a.UserData = appendAssignmentUserData(nil, sp.standby[member])
		s := kmsg.NewSyncGroupRequestGroupAssignment()
		s.MemberID = member
		s.MemberAssignment = a.AppendTo(nil)
		out = append(out, s)
	}
	return out
}

// memberUserData is what a member publishes in its JoinGroup metadata.
type memberUserData struct {
	Advertise string          // its HTTP address
	Freshness map[int32]int64 // partition of the events topic → changelog offset of its copy
}

// appendMemberUserData appends ud encoded: the version byte; the
// address (uvarint length, bytes); the number of copies (uvarint) and,
// by ascending partition, each one's partition and offset (uvarints).
// Negative partitions and offsets (no copy) are left out.
func appendMemberUserData(dst []byte, ud memberUserData) []byte {
	dst = append(dst, userDataVersion)
	dst = binary.AppendUvarint(dst, uint64(len(ud.Advertise)))
	dst = append(dst, ud.Advertise...)
	var ps []int32
	for p, off := range ud.Freshness {
		if p >= 0 && off >= 0 {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	dst = binary.AppendUvarint(dst, uint64(len(ps)))
	for _, p := range ps {
		dst = binary.AppendUvarint(dst, uint64(p))
		dst = binary.AppendUvarint(dst, uint64(ud.Freshness[p]))
	}
	return dst
}

// decodeMemberUserData decodes what appendMemberUserData wrote. Empty
// input (a member that sent none) decodes as nothing.
func decodeMemberUserData(b []byte) (memberUserData, error) {
	var ud memberUserData
	if len(b) == 0 {
		return ud, nil
	}
	r := userDataReader{b: b}
	version := r.version()
	ud.Advertise = string(r.bytes(r.uvarint("address length", math.MaxInt32)))
	n := r.count("copies", 2)
	if n > 0 {
		ud.Freshness = make(map[int32]int64, n)
	}
	last := int64(-1)
	for range n {
		p := int64(r.uvarint("partition", math.MaxInt32))
		off := int64(r.uvarint("offset", math.MaxInt64))
		if r.err == nil && p <= last {
			r.err = fmt.Errorf("%w: partition %d after %d", errUserData, p, last)
		}
		last = p
		ud.Freshness[int32(p)] = off
	}
	if err := r.end(version); err != nil {
		return memberUserData{}, fmt.Errorf("decode member userdata (%d bytes): %w", len(b), err)
	}
	return ud, nil
}

// appendAssignmentUserData appends a member's standby partitions
// encoded: the version byte, their number and, ascending, each one
// (uvarints).
func appendAssignmentUserData(dst []byte, standby []int32) []byte {
	dst = append(dst, userDataVersion)
	dst = binary.AppendUvarint(dst, uint64(len(standby)))
	for _, p := range slices.Sorted(slices.Values(standby)) {
		dst = binary.AppendUvarint(dst, uint64(p))
	}
	return dst
}

// decodeAssignmentUserData decodes what appendAssignmentUserData wrote.
// Empty input decodes as no standbys.
func decodeAssignmentUserData(b []byte) ([]int32, error) {
	if len(b) == 0 {
		return nil, nil
	}
	r := userDataReader{b: b}
	version := r.version()
	n := r.count("standbys", 1)
	var standby []int32
	for range n {
		p := int32(r.uvarint("partition", math.MaxInt32))
		if r.err == nil && len(standby) > 0 && p <= standby[len(standby)-1] {
			r.err = fmt.Errorf("%w: partition %d after %d", errUserData, p, standby[len(standby)-1])
		}
		standby = append(standby, p)
	}
	if err := r.end(version); err != nil {
		return nil, fmt.Errorf("decode assignment userdata (%d bytes): %w", len(b), err)
	}
	return standby, nil
}

// userDataReader reads a tailor userdata. The first error sticks: later
// reads return zero values.
type userDataReader struct {
	b   []byte
	err error
}

// version reads the version byte; 0 is not one.
func (r *userDataReader) version() byte {
	if len(r.b) == 0 || r.b[0] == 0 {
		r.err = fmt.Errorf("%w: no version", errUserData)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// uvarint reads a uvarint of at most maxValue.
func (r *userDataReader) uvarint(what string, maxValue uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	switch {
	case n <= 0:
		r.err = fmt.Errorf("%w: %s: truncated or overlong varint", errUserData, what)
		return 0
	case v > maxValue:
		r.err = fmt.Errorf("%w: %s %d above %d", errUserData, what, v, maxValue)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads the number of entries that follow, each at least minSize
// bytes: a count the bytes left cannot hold is an error, so no count
// makes a large allocation.
func (r *userDataReader) count(what string, minSize int) int {
	n := r.uvarint(what, math.MaxInt32)
	if r.err == nil && n > uint64(len(r.b)/minSize) {
		r.err = fmt.Errorf("%w: %d %s in %d bytes", errUserData, n, what, len(r.b))
		return 0
	}
	return int(n)
}

// bytes reads n bytes.
func (r *userDataReader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%w: %d bytes wanted, %d left", errUserData, n, len(r.b))
		return nil
	}
	b := r.b[:n]
	r.b = r.b[n:]
	return b
}

// end returns the first error, or one for bytes left over in a version
// that has no more fields (a later version's are skipped).
func (r *userDataReader) end(version byte) error {
	if r.err == nil && version == userDataVersion && len(r.b) > 0 {
		r.err = fmt.Errorf("%w: %d bytes after the last field", errUserData, len(r.b))
	}
	return r.err
}

// memberInfo is one group member as the cluster view lists it.
type memberInfo struct {
	MemberID       string
	InstanceID     string  // "" for a dynamic member
	Host           string  // the client host the broker saw
	memberUserData         // what it published; empty when nothing
	Active         []int32 // partitions of the events topic it consumes, ascending
	Standby        []int32 // partitions of the events topic it keeps a standby of, ascending
}

// decodeMemberInfo reads a member of a group as kadm's DescribeGroups
// returns it (kadm decodes the "consumer" protocol type's metadata and
// assignment): what it published at its JoinGroup and what the leader
// assigned it, for the events topic. It is for a group whose Protocol is
// standbyProtocol; under cooperative-sticky (during a rolling upgrade)
// the userdata is that balancer's and does not decode. A member that
// sent no userdata, or has no assignment yet (a rebalance in progress),
// has those fields empty.
func decodeMemberInfo(topic string, m kadm.DescribedGroupMember) (memberInfo, error) {
	join, ok := m.Join.AsConsumer()
	if !ok {
		return memberInfo{}, fmt.Errorf("group member %s: not of the consumer protocol type", m.MemberID)
	}
	assigned, _ := m.Assigned.AsConsumer()
	info, err := memberInfoOf(topic, join, assigned)
	if err != nil {
		return memberInfo{}, fmt.Errorf("group member %s: %w", m.MemberID, err)
	}
	info.MemberID, info.Host = m.MemberID, m.ClientHost
	if m.InstanceID != nil {
		info.InstanceID = *m.InstanceID
	}
	return info, nil
}

// memberInfoOf decodes a member's JoinGroup metadata and assignment
// (nil: none yet); see decodeMemberInfo.
func memberInfoOf(topic string, join *kmsg.ConsumerMemberMetadata, assigned *kmsg.ConsumerMemberAssignment) (memberInfo, error) {
	ud, err := decodeMemberUserData(join.UserData)
	if err != nil {
		return memberInfo{}, err
	}
	info := memberInfo{memberUserData: ud}
	if assigned == nil {
		return info, nil
	}
	for _, t := range assigned.Topics {
		if t.Topic == topic {
			info.Active = append(info.Active, t.Partitions...)
		}
	}
	slices.Sort(info.Active)
	if info.Standby, err = decodeAssignmentUserData(assigned.UserData); err != nil {
		return memberInfo{}, err
	}
	return info, nil
}
