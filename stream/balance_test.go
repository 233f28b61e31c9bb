package stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const balanceTopic = "events"

// testMember is a group member as a balance test sets it up: what it
// owns, at which generation, and its copies (partition → offset).
type testMember struct {
	id       string
	owned    []int32
	gen      int32
	fresh    map[int32]int64
	userData []byte // when set, sent instead of tailor's userdata
}

// join returns the member's JoinGroup response entry, its metadata as
// standbyBalancer writes it.
func (tm testMember) join(t *testing.T) kmsg.JoinGroupResponseMember {
	t.Helper()
	s := newStandbyBalancer(balancerConfig{
		Topic: balanceTopic, Advertise: "http://" + tm.id + ":8080",
		Freshness: func() map[int32]int64 { return tm.fresh },
	})
	var current map[string][]int32
	if tm.owned != nil {
		current = map[string][]int32{balanceTopic: slices.Clone(tm.owned)}
	}
	meta := s.JoinGroupMetadata([]string{balanceTopic}, current, tm.gen)
	if tm.userData != nil {
		var m kmsg.ConsumerMemberMetadata
		if err := m.ReadFrom(meta); err != nil {
			t.Fatal(err)
		}
		m.UserData = tm.userData
		meta = m.AppendTo(nil)
	}
	j := kmsg.NewJoinGroupResponseMember()
	j.MemberID = tm.id
	j.ProtocolMetadata = meta
	return j
}

// memberPlan is one member's assignment as it parses it.
type memberPlan struct {
	Active, Standby []int32
}

// balanceGroup balances n partitions of the events topic over members as
// the group leader does, and returns the sync assignments and what each
// member reads from its own (through ParseSyncAssignment and
// OnAssignment).
func balanceGroup(t *testing.T, standbys int, n int32, members []testMember) ([]kmsg.SyncGroupRequestGroupAssignment, map[string]memberPlan) {
	t.Helper()
	joins := make([]kmsg.JoinGroupResponseMember, len(members))
	for i, m := range members {
		joins[i] = m.join(t)
	}
	leader := newStandbyBalancer(balancerConfig{Topic: balanceTopic, Standbys: standbys})
	b, topics, err := leader.MemberBalancer(joins)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := topics[balanceTopic]; !ok || len(topics) != 1 {
		t.Fatalf("member topics %v, want only %s", topics, balanceTopic)
	}
	into, err := b.(kgo.GroupMemberBalancerOrError).BalanceOrError(map[string]int32{balanceTopic: n})
	if err != nil {
		t.Fatal(err)
	}
	assignments := into.IntoSyncAssignment()
	plans := make(map[string]memberPlan, len(assignments))
	for _, a := range assignments {
		var got memberPlan
		s := newStandbyBalancer(balancerConfig{Topic: balanceTopic, OnAssignment: func(active, standby []int32) {
			got = memberPlan{active, standby}
		}})
		active, err := s.ParseSyncAssignment(a.MemberAssignment)
		if err != nil {
			t.Fatalf("member %s: %v", a.MemberID, err)
		}
		if !slices.Equal(active[balanceTopic], got.Active) {
			t.Errorf("member %s: ParseSyncAssignment returns %v, OnAssignment got %v", a.MemberID, active[balanceTopic], got.Active)
		}
		plans[a.MemberID] = got
	}
	if len(plans) != len(members) {
		t.Fatalf("%d assignments for %d members", len(plans), len(members))
	}
	return assignments, plans
}

// checkPlan fails t with planErrors.
func checkPlan(t *testing.T, plans map[string]memberPlan, n int32, standbys int, withheld bool) {
	t.Helper()
	for _, e := range planErrors(plans, n, standbys, withheld) {
		t.Error(e)
	}
}

// planErrors returns what is wrong with plans of n partitions: each
// partition must be active on at most one member (exactly one unless
// some may be withheld, and then balanced: n/k or n/k+1 each), and have
// min(standbys, k-1) standbys, all distinct and none on its active
// member.
func planErrors(plans map[string]memberPlan, n int32, standbys int, withheld bool) []string {
	var errs []string
	k := len(plans)
	owner := make(map[int32]string)
	standbysOf := make(map[int32][]string)
	for id, plan := range plans {
		for _, p := range plan.Active {
			if o, dup := owner[p]; dup || p < 0 || p >= n {
				errs = append(errs, fmt.Sprintf("partition %d active on %s (and %q)", p, id, o))
			}
			owner[p] = id
		}
		if !withheld && (len(plan.Active) < int(n)/k || len(plan.Active) > (int(n)+k-1)/k) {
			errs = append(errs, fmt.Sprintf("%s has %d active partitions of %d over %d members", id, len(plan.Active), n, k))
		}
		if !slices.IsSorted(plan.Standby) || len(slices.Compact(slices.Clone(plan.Standby))) != len(plan.Standby) {
			errs = append(errs, fmt.Sprintf("%s standbys %v not ascending and distinct", id, plan.Standby))
		}
		for _, p := range plan.Standby {
			standbysOf[p] = append(standbysOf[p], id)
		}
	}
	if !withheld && len(owner) != int(n) {
		errs = append(errs, fmt.Sprintf("%d of %d partitions assigned", len(owner), n))
	}
	for p := range n {
		if got, want := len(standbysOf[p]), min(standbys, k-1); got != want {
			errs = append(errs, fmt.Sprintf("partition %d has standbys %v, want %d", p, standbysOf[p], want))
		}
		if o, ok := owner[p]; ok && slices.Contains(standbysOf[p], o) {
			errs = append(errs, fmt.Sprintf("partition %d is standby on its owner %s", p, o))
		}
	}
	return errs
}

// newMembers returns k members without ownership or copies.
func newMembers(k int) []testMember {
	ms := make([]testMember, k)
	for i := range ms {
		ms[i] = testMember{id: fmt.Sprintf("m%02d", i)}
	}
	return ms
}

// TestBalanceCounts: a new group and a settled one (each member owning
// a balanced share in a scattered layout) get every partition once,
// balanced, with their standbys balanced too (no copies to stick to).
func TestBalanceCounts(t *testing.T) {
	for _, tc := range []struct {
		k        int
		n        int32
		standbys int
	}{
		{1, 6, 1}, {2, 6, 1}, {3, 6, 1}, {3, 7, 2}, {4, 3, 1}, {5, 16, 2}, {3, 16, 5}, {6, 24, 0}, {7, 48, 2},
	} {
		for _, settled := range []bool{false, true} {
			t.Run(fmt.Sprintf("k%d-n%d-s%d-settled=%v", tc.k, tc.n, tc.standbys, settled), func(t *testing.T) {
				ms := newMembers(tc.k)
				if settled {
					for p, i := range rand.New(rand.NewPCG(1, 2)).Perm(int(tc.n)) {
						ms[i%tc.k].owned = append(ms[i%tc.k].owned, int32(p))
					}
				}
				_, plans := balanceGroup(t, tc.standbys, tc.n, ms)
				checkPlan(t, plans, tc.n, tc.standbys, false)
				count := min(tc.standbys, tc.k-1)
				limit := (int(tc.n)*count + tc.k - 1) / tc.k
				for id, plan := range plans {
					if len(plan.Standby) > limit {
						t.Errorf("%s has %d standbys, more than ceil(%d*%d/%d) = %d", id, len(plan.Standby), tc.n, count, tc.k, limit)
					}
				}
			})
		}
	}
}

// TestBalanceSticky: members keep what they own as far as counts stay
// balanced; a stale claim (lower generation) does not count.
func TestBalanceSticky(t *testing.T) {
	for _, tc := range []struct {
		name    string
		n       int32
		members []testMember
		want    map[string][]int32
	}{
		{"balanced owners keep all", 6,
			[]testMember{{id: "a", owned: []int32{0, 3}}, {id: "b", owned: []int32{1, 4}}, {id: "c", owned: []int32{2, 5}}},
			map[string][]int32{"a": {0, 3}, "b": {1, 4}, "c": {2, 5}}},
		{"a member left: the others keep theirs and share its partitions", 6,
			[]testMember{{id: "a", owned: []int32{0, 1}}, {id: "b", owned: []int32{2, 3}}},
			map[string][]int32{"a": {0, 1, 4}, "b": {2, 3, 5}}},
		{"uneven: the first with more keeps the extra one", 5,
			[]testMember{{id: "a", owned: []int32{0, 1, 2}}, {id: "b", owned: []int32{3, 4}}},
			map[string][]int32{"a": {0, 1, 2}, "b": {3, 4}}},
		{"a stale claim loses to a newer generation's", 4,
			[]testMember{{id: "a", owned: []int32{0, 1}, gen: 5}, {id: "b", owned: []int32{1, 2}, gen: 4}},
			map[string][]int32{"a": {0, 1}, "b": {2, 3}}},
		{"claims of partitions that do not exist are ignored", 2,
			[]testMember{{id: "a", owned: []int32{0, 7, -1}}, {id: "b"}},
			map[string][]int32{"a": {0}, "b": {1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkActive(t, tc.n, tc.members, tc.want)
		})
	}
}

// TestBalanceFreshest: partitions nobody keeps (a dead member's) go to
// the member with room holding the freshest copy, ties to the least
// loaded; room comes before freshness.
func TestBalanceFreshest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		n       int32
		members []testMember
		want    map[string][]int32
	}{
		{"the freshest copy wins", 6, []testMember{
			{id: "a", owned: []int32{0, 1}, fresh: map[int32]int64{0: 1, 1: 1, 4: 100}},
			{id: "b", owned: []int32{2, 3}, fresh: map[int32]int64{4: 90, 5: 50}},
		}, map[string][]int32{"a": {0, 1, 4}, "b": {2, 3, 5}}},
		{"a standby takes over even when less loaded members have none", 6, []testMember{
			{id: "a", owned: []int32{0, 1}},
			{id: "b", owned: []int32{2}, fresh: map[int32]int64{4: 7, 5: 7}},
			{id: "c"},
		}, map[string][]int32{"a": {0, 1}, "b": {2, 4}, "c": {3, 5}}},
		{"room before freshness", 6, []testMember{
			{id: "a", owned: []int32{0, 1, 2}, fresh: map[int32]int64{4: 100, 5: 100}},
			{id: "b", owned: []int32{3}},
		}, map[string][]int32{"a": {0, 1, 2}, "b": {3, 4, 5}}},
		{"equal copies go to the least loaded", 7, []testMember{
			{id: "a", owned: []int32{0, 1}, fresh: map[int32]int64{5: 7}},
			{id: "b", owned: []int32{2}, fresh: map[int32]int64{5: 7}},
			{id: "c", owned: []int32{3, 4}},
		}, map[string][]int32{"a": {0, 1, 6}, "b": {2, 5}, "c": {3, 4}}},
		{"an unknown offset is no copy", 4, []testMember{
			{id: "a", owned: []int32{0}},
			{id: "b", owned: []int32{1}, fresh: map[int32]int64{2: -1}},
		}, map[string][]int32{"a": {0, 2}, "b": {1, 3}}},
		{"offset 0 is a copy", 4, []testMember{
			{id: "a", owned: []int32{0}},
			{id: "b", owned: []int32{1}, fresh: map[int32]int64{2: 0}},
		}, map[string][]int32{"a": {0, 3}, "b": {1, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkActive(t, tc.n, tc.members, tc.want)
		})
	}
}

// TestBalanceStandbys: standbys go where copies are (freshest first),
// spread where there are none, never on the owner, as many as members
// allow.
func TestBalanceStandbys(t *testing.T) {
	for _, tc := range []struct {
		name     string
		n        int32
		standbys int
		members  []testMember
		want     map[string][]int32 // standbys by member
	}{
		{"standbys stay on their copies", 6, 1, []testMember{
			{id: "a", owned: []int32{0, 1}, fresh: map[int32]int64{0: 9, 1: 9, 2: 5, 3: 5}},
			{id: "b", owned: []int32{2, 3}, fresh: map[int32]int64{2: 9, 3: 9, 4: 5, 5: 5}},
			{id: "c", owned: []int32{4, 5}, fresh: map[int32]int64{4: 9, 5: 9, 0: 5, 1: 5}},
		}, map[string][]int32{"a": {2, 3}, "b": {4, 5}, "c": {0, 1}}},
		{"the freshest copy first", 3, 1, []testMember{
			{id: "a", owned: []int32{0}},
			{id: "b", owned: []int32{1}, fresh: map[int32]int64{0: 5}},
			{id: "c", owned: []int32{2}, fresh: map[int32]int64{0: 9}},
		}, map[string][]int32{"a": {1}, "b": {2}, "c": {0}}},
		{"no more than members allow", 4, 3, []testMember{
			{id: "a", owned: []int32{0, 1}}, {id: "b", owned: []int32{2, 3}},
		}, map[string][]int32{"a": {2, 3}, "b": {0, 1}}},
		{"spread where there are no copies", 6, 1, []testMember{
			{id: "a", owned: []int32{0, 1}}, {id: "b", owned: []int32{2, 3}}, {id: "c", owned: []int32{4, 5}},
		}, map[string][]int32{"a": {3, 5}, "b": {0, 4}, "c": {1, 2}}},
		{"a newcomer gets its share though the others hold every copy", 6, 1, []testMember{
			{id: "a", owned: []int32{1, 3}, fresh: map[int32]int64{0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1}},
			{id: "b", owned: []int32{0, 2}, fresh: map[int32]int64{0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1}},
			{id: "c", owned: []int32{4, 5}},
		}, map[string][]int32{"a": {2, 4}, "b": {3, 5}, "c": {0, 1}}},
		{"copies do not pile standbys up on one member", 6, 1, []testMember{
			{id: "a", owned: []int32{0, 1}}, {id: "b", owned: []int32{2, 3}},
			{id: "c", owned: []int32{4, 5}, fresh: map[int32]int64{0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1}},
		}, map[string][]int32{"a": {2, 3}, "b": {4, 5}, "c": {0, 1}}},
		{"one member: no standbys", 3, 2, []testMember{{id: "a"}}, map[string][]int32{"a": nil}},
		{"none asked", 4, 0, []testMember{{id: "a"}, {id: "b"}}, map[string][]int32{"a": nil, "b": nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, plans := balanceGroup(t, tc.standbys, tc.n, tc.members)
			checkPlan(t, plans, tc.n, tc.standbys, false)
			for id, want := range tc.want {
				if got := plans[id].Standby; !slices.Equal(got, want) {
					t.Errorf("%s standbys %v, want %v", id, got, want)
				}
			}
		})
	}
}

// TestStandbySpread: evening standbys out moves first one the loaded
// member holds no copy of, then one the other holds a copy of; a member
// active for every partition gets none.
func TestStandbySpread(t *testing.T) {
	for _, tc := range []struct {
		name           string
		fresh0, fresh2 map[int32]int64
		want           [][]int
	}{
		{"one without a copy moves", map[int32]int64{0: 1, 2: 1}, nil, [][]int{{0}, {2}, {0}, {2}}},
		{"one to a copy moves", map[int32]int64{0: 1, 1: 1, 2: 1}, map[int32]int64{2: 1}, [][]int{{0}, {0}, {2}, {2}}},
		{"else the lowest", nil, nil, [][]int{{2}, {0}, {0}, {2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &groupView{topic: balanceTopic, members: []groupMember{{fresh: tc.fresh0}, {}, {fresh: tc.fresh2}}}
			r := &standbyRanker{g: g, ms: []int{0, 1, 2}, active: []int{1, 1, 1, 1}, limit: 2, load: []int{3, 0, 1}}
			chosen := [][]int{{0}, {0}, {0}, {2}}
			r.spread(chosen)
			if !reflect.DeepEqual(chosen, tc.want) || !slices.Equal(r.load, []int{2, 0, 2}) {
				t.Errorf("spread to %v (loads %v), want %v (loads [2 0 2])", chosen, r.load, tc.want)
			}
		})
	}
}

// TestBalanceCooperative: a member joins a group whose one member owns
// every partition. The owner keeps its count, first the partitions the
// newcomer holds no copy of; the others are withheld until the owner
// revokes them, and the newcomer is their standby meanwhile. After the
// revoke, the next balance gives them over.
func TestBalanceCooperative(t *testing.T) {
	a := testMember{id: "a", owned: []int32{0, 1, 2, 3, 4, 5}, gen: 3, fresh: map[int32]int64{0: 10, 1: 10, 2: 10, 3: 10, 4: 10, 5: 10}}
	b := testMember{id: "b", gen: -1, fresh: map[int32]int64{0: 1, 1: 1, 2: 1}} // an old disk's copies
	_, plans := balanceGroup(t, 1, 6, []testMember{a, b})
	checkPlan(t, plans, 6, 1, true)
	want := map[string]memberPlan{
		"a": {Active: []int32{3, 4, 5}},
		"b": {Standby: []int32{0, 1, 2, 3, 4, 5}},
	}
	if !reflect.DeepEqual(plans, want) {
		t.Fatalf("first balance %+v, want %+v", plans, want)
	}

	// a revoked 0, 1 and 2 and rejoins; b has warmed its copies up.
	a.owned, a.gen = plans["a"].Active, 4
	b.fresh = map[int32]int64{0: 9, 1: 9, 2: 9, 3: 8, 4: 8, 5: 8}
	_, plans = balanceGroup(t, 1, 6, []testMember{a, b})
	checkPlan(t, plans, 6, 1, false)
	want = map[string]memberPlan{
		"a": {Active: []int32{3, 4, 5}, Standby: []int32{0, 1, 2}},
		"b": {Active: []int32{0, 1, 2}, Standby: []int32{3, 4, 5}},
	}
	if !reflect.DeepEqual(plans, want) {
		t.Fatalf("second balance %+v, want %+v", plans, want)
	}
}

// TestBalanceDeterministic: the same group balances to the same bytes,
// whatever the order its members are listed in.
func TestBalanceDeterministic(t *testing.T) {
	ms := newMembers(5)
	for p := range int32(20) {
		m := &ms[int(p)%4] // the fifth member is new
		m.owned = append(m.owned, p)
		c := &ms[(int(p)+2)%5]
		if c.fresh == nil {
			c.fresh = make(map[int32]int64)
		}
		c.fresh[p] = int64(p)
	}
	want, _ := balanceGroup(t, 2, 20, ms)
	for i := range 5 {
		slices.Reverse(ms)
		ms = append(ms[1:], ms[0])
		got, _ := balanceGroup(t, 2, 20, ms)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("reordering %d balances differently:\n%v\nwant\n%v", i, got, want)
		}
	}
}

// TestBalanceWithoutUserData: members that send no userdata, or one this
// version cannot read, balance as members without copies.
func TestBalanceWithoutUserData(t *testing.T) {
	members := []testMember{
		{id: "a", owned: []int32{0}, userData: []byte{}},
		{id: "b", owned: []int32{1}, userData: []byte{0, 0, 0, 1, 0, 6}}, // another balancer's
		{id: "c", owned: []int32{2}, fresh: map[int32]int64{3: 5}},
	}
	_, plans := balanceGroup(t, 1, 4, members)
	checkPlan(t, plans, 4, 1, false)
	if want := []int32{2, 3}; !slices.Equal(plans["c"].Active, want) {
		t.Errorf("c active %v, want %v (the only copy of 3)", plans["c"].Active, want)
	}
	if got := plans["a"].Active; !slices.Equal(got, []int32{0}) {
		t.Errorf("a active %v, want [0]", got)
	}
}

// TestJoinGroupMetadata: the metadata carries the owned partitions,
// generation and userdata, and the same state writes the same bytes.
func TestJoinGroupMetadata(t *testing.T) {
	fresh := map[int32]int64{5: 50, 1: 10, 3: 30, 7: -1}
	s := newStandbyBalancer(balancerConfig{Topic: balanceTopic, Advertise: "10.0.0.1:8080", Freshness: func() map[int32]int64 { return fresh }})
	current := map[string][]int32{balanceTopic: {3, 1}, "other": {0}}
	got := s.JoinGroupMetadata([]string{"other", balanceTopic}, current, 9)
	for range 10 {
		again := s.JoinGroupMetadata([]string{"other", balanceTopic}, map[string][]int32{"other": {0}, balanceTopic: {1, 3}}, 9)
		if !bytes.Equal(again, got) {
			t.Fatal("the same state writes different metadata")
		}
	}
	var meta kmsg.ConsumerMemberMetadata
	if err := meta.ReadFrom(got); err != nil {
		t.Fatal(err)
	}
	if meta.Version != 3 || meta.Generation != 9 || len(meta.OwnedPartitions) != 2 ||
		meta.OwnedPartitions[0].Topic != balanceTopic || !slices.Equal(meta.OwnedPartitions[0].Partitions, []int32{1, 3}) {
		t.Errorf("metadata %+v", meta)
	}
	info, err := memberInfoOf(balanceTopic, &meta, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int32]int64{1: 10, 3: 30, 5: 50}; info.Advertise != "10.0.0.1:8080" || !maps.Equal(info.Freshness, want) {
		t.Errorf("decoded %+v, want address 10.0.0.1:8080 and freshness %v", info, want)
	}
}

// TestUserDataRoundTrip: both userdata encodings read back as written,
// and kafka's assignment as memberInfoOf reads it.
func TestUserDataRoundTrip(t *testing.T) {
	for _, ud := range []memberUserData{
		{},
		{Advertise: "host:1"},
		{Advertise: "[::1]:8080", Freshness: map[int32]int64{0: 0, 3: math.MaxInt64, math.MaxInt32: 1}},
	} {
		got, err := decodeMemberUserData(appendMemberUserData(nil, ud))
		if err != nil || got.Advertise != ud.Advertise || !maps.Equal(got.Freshness, ud.Freshness) {
			t.Errorf("%+v reads back as %+v, %v", ud, got, err)
		}
	}
	for _, standby := range [][]int32{nil, {0}, {1, 2, 300, math.MaxInt32}} {
		got, err := decodeAssignmentUserData(appendAssignmentUserData(nil, standby))
		if err != nil || !slices.Equal(got, standby) {
			t.Errorf("%v reads back as %v, %v", standby, got, err)
		}
	}
	assigned := kmsg.NewConsumerMemberAssignment()
	assigned.Topics = []kmsg.ConsumerMemberAssignmentTopic{{Topic: "other", Partitions: []int32{9}}, {Topic: balanceTopic, Partitions: []int32{4, 2}}}
	assigned.UserData = appendAssignmentUserData(nil, []int32{5, 1})
	meta := kmsg.NewConsumerMemberMetadata()
	info, err := memberInfoOf(balanceTopic, &meta, &assigned)
	if err != nil || !slices.Equal(info.Active, []int32{2, 4}) || !slices.Equal(info.Standby, []int32{1, 5}) {
		t.Errorf("assignment reads as %+v, %v", info, err)
	}
}

// TestUserDataMalformed: bad userdata is an error saying what is wrong;
// a later version's extra fields are skipped.
func TestUserDataMalformed(t *testing.T) {
	valid := appendMemberUserData(nil, memberUserData{Advertise: "h:1", Freshness: map[int32]int64{2: 5}})
	later := append([]byte{2}, append(valid[1:], 0xff, 0xff)...)
	if ud, err := decodeMemberUserData(later); err != nil || ud.Advertise != "h:1" || ud.Freshness[2] != 5 {
		t.Errorf("version 2 with more fields reads as %+v, %v", ud, err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"version 0", []byte{0, 0, 0}},
		{"truncated", valid[:len(valid)-1]},
		{"trailing bytes", append(slices.Clone(valid), 0)},
		{"address longer than the data", []byte{1, 50, 'h'}},
		{"count beyond the data", []byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0x07}},
		{"partition above int32", []byte{1, 0, 1, 0x80, 0x80, 0x80, 0x80, 0x08, 0}},
		{"partitions not ascending", []byte{1, 0, 2, 3, 1, 3, 1}},
		{"overlong varint", []byte{1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}},
	} {
		if _, err := decodeMemberUserData(tc.b); !errors.Is(err, errUserData) {
			t.Errorf("member userdata %s: %v, want errUserData", tc.name, err)
		}
	}
	for _, b := range [][]byte{{0}, {1, 2, 5, 5}, {1, 2, 5}, {1, 1, 5, 0}} {
		if _, err := decodeAssignmentUserData(b); !errors.Is(err, errUserData) {
			t.Errorf("assignment userdata %v: %v, want errUserData", b, err)
		}
	}
	s := newStandbyBalancer(balancerConfig{Topic: balanceTopic, OnAssignment: func(_, _ []int32) { t.Error("OnAssignment for a malformed assignment") }})
	a := kmsg.NewConsumerMemberAssignment()
	a.UserData = []byte{1, 9}
	if _, err := s.ParseSyncAssignment(a.AppendTo(nil)); !errors.Is(err, errUserData) {
		t.Errorf("malformed assignment userdata: %v", err)
	}
	if _, err := s.ParseSyncAssignment([]byte{0, 0, 0}); err == nil {
		t.Error("a truncated assignment parses")
	}
}

// FuzzDecodeMemberUserData: any bytes (another member's metadata is
// outside input) decode without panicking, to an error wrapping
// errUserData or to userdata that encodes and decodes to itself.
func FuzzDecodeMemberUserData(f *testing.F) {
	f.Add([]byte{})
	f.Add(appendMemberUserData(nil, memberUserData{Advertise: "h:1", Freshness: map[int32]int64{0: 1, 9: 1 << 40}}))
	f.Add([]byte{2, 0, 0, 7})
	f.Add([]byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0x07})
	f.Fuzz(func(t *testing.T, b []byte) {
		ud, err := decodeMemberUserData(b)
		if err != nil {
			if !errors.Is(err, errUserData) {
				t.Fatalf("error %v does not wrap errUserData", err)
			}
			return
		}
		again, err := decodeMemberUserData(appendMemberUserData(nil, ud))
		if err != nil || again.Advertise != ud.Advertise || !maps.Equal(again.Freshness, ud.Freshness) {
			t.Fatalf("%+v reads back as %+v, %v", ud, again, err)
		}
	})
}

// FuzzDecodeAssignmentUserData: the same for the leader's assignment.
func FuzzDecodeAssignmentUserData(f *testing.F) {
	f.Add([]byte{})
	f.Add(appendAssignmentUserData(nil, []int32{0, 5, 1 << 20}))
	f.Add([]byte{3, 1, 0, 9, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		standby, err := decodeAssignmentUserData(b)
		if err != nil {
			if !errors.Is(err, errUserData) {
				t.Fatalf("error %v does not wrap errUserData", err)
			}
			return
		}
		again, err := decodeAssignmentUserData(appendAssignmentUserData(nil, standby))
		if err != nil || !slices.Equal(again, standby) {
			t.Fatalf("%v reads back as %v, %v", standby, again, err)
		}
	})
}

// groupClient is a kgo client in a consumer group with standbyBalancer,
// a static member as the processor is, recording its assignment. Its Freshness reports a copy of each active
// partition at offset 10 and of each standby partition at offset 20: a
// standby is the freshest copy of a partition its owner no longer serves.
type groupClient struct {
	addr   string
	cl     *kgo.Client
	cancel context.CancelFunc
	polled chan struct{}

	mu              sync.Mutex
	active, standby []int32
}

func startGroupClient(t *testing.T, brokers []string, group, topic, instance string) *groupClient {
	t.Helper()
	addr := instance + ":8080"
	c := &groupClient{addr: addr, polled: make(chan struct{})}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.InstanceID(instance), kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(300*time.Millisecond),
		kgo.Balancers(newStandbyBalancer(balancerConfig{
			Topic: topic, Standbys: 1, Advertise: addr, Freshness: c.freshness, OnAssignment: c.assigned,
		}), kgo.CooperativeStickyBalancer()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cl, c.cancel = cl, cancel
	go func() {
		defer close(c.polled)
		for ctx.Err() == nil {
			cl.PollFetches(ctx)
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *groupClient) freshness() map[int32]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	fresh := make(map[int32]int64)
	for _, p := range c.active {
		fresh[p] = 10
	}
	for _, p := range c.standby {
		fresh[p] = 20
	}
	return fresh
}

func (c *groupClient) assigned(active, standby []int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active, c.standby = active, standby
}

func (c *groupClient) plan() memberPlan {
	c.mu.Lock()
	defer c.mu.Unlock()
	return memberPlan{c.active, c.standby}
}

// close stops the client without leaving the group, as a static member
// that dies: the broker drops it after its session timeout. Twice is
// harmless.
func (c *groupClient) close() {
	c.cancel()
	<-c.polled
	c.cl.Close()
}

// settledGroup waits until the group's description (decodeMemberInfo)
// shows clients in a stable group of the tailor-standby protocol, every
// partition of topic consumed once and with one standby elsewhere, each
// client's own view agreeing; it returns the plan by address.
func settledGroup(t *testing.T, adm *kadm.Client, group, topic string, n int32, clients []*groupClient) map[string]memberPlan {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var why string
	for ctx.Err() == nil {
		var plans map[string]memberPlan
		if plans, why = describeGroup(ctx, adm, group, topic, clients); why == "" {
			errs := planErrors(plans, n, 1, false)
			if len(errs) == 0 {
				return plans
			}
			why = strings.Join(errs, "; ")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("group %s did not settle: %s", group, why)
	return nil
}

// describeGroup returns the plan the group's description shows, by
// address, or why it is not one of clients agreeing with it.
func describeGroup(ctx context.Context, adm *kadm.Client, group, topic string, clients []*groupClient) (map[string]memberPlan, string) {
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil, err.Error()
	}
	g := described[group]
	if g.State != "Stable" || g.Protocol != standbyProtocol || len(g.Members) != len(clients) {
		return nil, fmt.Sprintf("group %s, protocol %q, %d members", g.State, g.Protocol, len(g.Members))
	}
	plans := make(map[string]memberPlan, len(clients))
	for _, m := range g.Members {
		info, err := decodeMemberInfo(topic, m)
		if err != nil {
			return nil, err.Error()
		}
		plans[info.Advertise] = memberPlan{info.Active, info.Standby}
	}
	for _, c := range clients {
		if own := c.plan(); !reflect.DeepEqual(own, plans[c.addr]) {
			return nil, fmt.Sprintf("%s sees %+v, the group %+v", c.addr, own, plans[c.addr])
		}
	}
	return plans, ""
}

// TestStandbyBalancerGroup: three clients in one group balance with one
// standby per partition: each partition is consumed by one client and
// has a standby on another, as the group's description decodes and as
// each client was told. When one client dies, each of its partitions
// goes to its standby where that one has room (the freshest copy), and
// the survivors keep theirs.
func TestStandbyBalancerGroup(t *testing.T) {
	var brokers []string
	if b := os.Getenv("TAILOR_TEST_BROKERS"); b != "" {
		brokers = strings.Split(b, ",")
	} else {
		brokers = startEmbedded(t, t.TempDir()).Addrs()
	}
	topic := "balance-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	const n = 12
	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	if _, err := adm.CreateTopic(context.Background(), n, -1, nil, topic); err != nil {
		t.Fatal(err)
	}
	var clients []*groupClient
	for i := range 3 {
		clients = append(clients, startGroupClient(t, brokers, topic, topic, "m"+strconv.Itoa(i)))
	}
	before := settledGroup(t, adm, topic, topic, n, clients)

	t.Logf("before: %+v", before)

	gone, survivors := pickVictim(t, before, clients)
	gone.close()
	after := settledGroup(t, adm, topic, topic, n, survivors)
	t.Logf("after %s died: %+v", gone.addr, after)
	for _, c := range survivors {
		kept := after[c.addr].Active
		if slices.ContainsFunc(before[c.addr].Active, func(p int32) bool { return !slices.Contains(kept, p) }) {
			t.Errorf("%s had %v, now %v", c.addr, before[c.addr].Active, kept)
		}
	}
	room := map[string]int{}
	for _, c := range survivors {
		room[c.addr] = n/2 - len(before[c.addr].Active)
	}
	for _, p := range before[gone.addr].Active {
		standby := ""
		for addr, plan := range before {
			if slices.Contains(plan.Standby, p) {
				standby = addr
			}
		}
		if standby == "" {
			t.Fatalf("partition %d had no standby: %+v", p, before)
		}
		if room[standby] == 0 {
			continue // the other survivor takes it
		}
		room[standby]--
		if !slices.Contains(after[standby].Active, p) {
			t.Errorf("partition %d of %s went elsewhere than its standby %s, which had room: before %+v, after %+v", p, gone.addr, standby, before, after)
		}
	}
}

// pickVictim returns the client to kill and the survivors: one whose
// partitions' standbys do not alternate between the survivors in group
// order (by instance ID, as clients are), the earlier first, which is
// where by load and order alone, without freshness, its partitions would
// go. If every client's do, the first.
func pickVictim(t *testing.T, before map[string]memberPlan, clients []*groupClient) (*groupClient, []*groupClient) {
	for i, c := range clients {
		others := slices.Delete(slices.Clone(clients), i, i+1)
		alternate := true
		for j, p := range before[c.addr].Active {
			alternate = alternate && slices.Contains(before[others[j%2].addr].Standby, p)
		}
		if !alternate {
			return c, others
		}
	}
	t.Log("every client's standbys alternate: this run does not tell freshness from group order")
	return clients[0], clients[1:]
}

// checkActive balances n partitions over members with one standby each
// and checks the plan, and that each member of want is given the active
// partitions it names.
func checkActive(t *testing.T, n int32, members []testMember, want map[string][]int32) {
	t.Helper()
	_, plans := balanceGroup(t, 1, n, members)
	checkPlan(t, plans, n, 1, false)
	for id, w := range want {
		if got := plans[id].Active; !slices.Equal(got, w) {
			t.Errorf("%s active %v, want %v", id, got, w)
		}
	}
}
