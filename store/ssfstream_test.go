package store_test

import (
	"testing"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/storetest"
)

func TestMemorySSFStreams(t *testing.T) {
	storetest.TestSSFStreams(t, func(t *testing.T) store.SSFStreamStore { return store.NewMemorySSFStreams() })
}
